//! Classic CNNs built from kiln-core's graph API alone (no backend code): each model is a plain
//! struct of layers whose `forward` reads like the paper's figure.

mod lenet;

pub use lenet::LeNet5;
