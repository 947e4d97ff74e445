//! The OVF descriptor: typed model, parser and writer.
