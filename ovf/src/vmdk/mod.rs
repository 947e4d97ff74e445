//! streamOptimized VMDK: the disk format OVA packages carry.
