//! OVA and directory packages: streaming tar reader, manifest and certificate.
