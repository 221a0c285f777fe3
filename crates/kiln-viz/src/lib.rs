//! kiln-viz: pictures of kiln models and training runs, and the text views of a model and its
//! plans.
//!
//! - [`save_filters`]: a convolution's weights as a grid of tiles; [`save_feature_maps`]: one
//!   image's channels after a layer.
//! - [`Metrics`] records loss, accuracy and throughput per step and epoch; [`save_curves`] plots
//!   them; [`Metrics::save_csv`] writes them.
//! - [`save_confusion_matrix`]: a labelled heat map of predictions against labels.
//! - [`saliency()`]: the gradient of a class score with respect to the input pixels, through
//!   kiln's autodiff, and [`save_saliency`] to draw it over the image.
//! - [`summary()`]: a Keras/torchinfo-like table of a model's layers (output shape, parameters,
//!   multiply-adds, receptive field), found in the graph its `forward` records.
//! - [`graph_dot`] and [`plan_dot`]: Graphviz DOT of a graph with its fused kernels, and of the
//!   plan's kernels and buffers.
//!
//! Every picture is a PNG drawn in a font shipped with the crate (DejaVu Sans, Latin-1 subset),
//! so nothing depends on system font libraries. Functions that draw return a [`Picture`] whose
//! `regions` say where each tile or cell is. Bad input (a tensor of the wrong rank, a class out
//! of range, a file that cannot be written) is an error, not a panic.

#![warn(missing_docs)]

pub mod confusion;
pub mod curves;
pub mod dot;
pub mod grid;
pub mod layers;
pub mod picture;
pub mod receptive;
pub mod saliency;
pub mod summary;

pub use confusion::{confusion_matrix, confusion_picture, save_confusion_matrix};
pub use curves::{curves_image, save_curves, EpochRecord, Metrics, StepRecord};
pub use dot::{graph_dot, kernel_name, plan_dot, save_dot};
pub use grid::{feature_maps, filter_grid, save_feature_maps, save_filters};
pub use layers::{find_layers, FoundLayer, LayerKind};
pub use picture::{save_gray, Picture, Rect};
pub use receptive::ReceptiveField;
pub use saliency::{saliency, saliency_picture, save_saliency};
pub use summary::{layer_outputs, summary, LayerSummary, Summary};
