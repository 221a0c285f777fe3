//! Classic CNNs built from kiln-core.
