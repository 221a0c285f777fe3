//! A chain of layers.

use super::Module;
use crate::error::Result;
use crate::export::{layers, GraphBuilder, ValueId};
use crate::tensor::Tensor;

/// Layers applied in order. Parameters and buffers are named by position, as PyTorch's
/// `nn.Sequential` names them (`0.weight`, `3.bias`, `1.running_mean`), or by the names given to
/// [`Sequential::named`].
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module + Send + Sync>)>,
}

impl Sequential {
    /// An empty chain.
    pub fn new() -> Sequential {
        Sequential::default()
    }
    /// Appends a layer named by its position.
    pub fn push(mut self, layer: impl Module + Send + Sync + 'static) -> Sequential {
        let name = self.layers.len().to_string();
        self.layers.push((name, Box::new(layer)));
        self
    }
    /// Appends a layer with a name of its own.
    pub fn named(mut self, name: &str, layer: impl Module + Send + Sync + 'static) -> Sequential {
        self.layers.push((name.to_string(), Box::new(layer)));
        self
    }
    /// Puts `layer` in the place of the layer called `name` (its position, `"6"`, or the name
    /// given to [`Sequential::named`]) and returns the layer it replaces; `None`, and nothing
    /// changes, if there is no layer of that name. A classifier's last layer is swapped so for
    /// another class count.
    pub fn replace(
        &mut self,
        name: &str,
        layer: impl Module + Send + Sync + 'static,
    ) -> Option<Box<dyn Module + Send + Sync>> {
        let (_, slot) = self.layers.iter_mut().find(|(n, _)| n == name)?;
        Some(std::mem::replace(slot, Box::new(layer)))
    }
    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    /// True if there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
    /// The output of every layer for input `x`, in order (for pictures of feature maps).
    pub fn forward_all(&self, x: &Tensor) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        let mut h = x.clone();
        for (name, layer) in &self.layers {
            h = layer.forward(&h);
            out.push((name.clone(), h.clone()));
        }
        out
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.layers
            .iter()
            .fold(x.clone(), |h, (_, layer)| layer.forward(&h))
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::chain(self.children(), g, x)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.layers
            .iter()
            .map(|(name, layer)| (name.clone(), layer.as_ref() as &dyn Module))
            .collect()
    }
}
