//! A model summary like Keras' `model.summary()` or torchinfo: one row per layer with its output
//! shape, parameters, multiply-adds and receptive field, and the totals. Works for any
//! [`Module`]: graphs are lazy, so the model's `forward` is recorded on a zero input of the given
//! shape (nothing runs) and the layers are found in the recorded graph (see [`find_layers`]).

use crate::layers::{find_layers, layer_prefix, LayerKind};
use crate::receptive::ReceptiveField;
use kiln_core::nn::Module;
use kiln_core::{Device, KilnError, Result, Tensor};
use std::fmt;

/// One row of a [`Summary`].
#[derive(Clone, Debug)]
pub struct LayerSummary {
    /// The layer's parameter prefix (`conv1`, `layer1.0.bn1`), or a made-up name for layers
    /// without parameters (`maxpool1`, `add1`).
    pub name: String,
    /// What kind of layer it is.
    pub kind: LayerKind,
    /// Its output shape for the summarised input (`None` for parameters never used).
    pub output_shape: Option<Vec<usize>>,
    /// Parameter elements named `name.*`.
    pub params: usize,
    /// Multiply-adds of the layer's matmuls for the whole input batch.
    pub mult_adds: u64,
    /// Input pixels one output element sees, and the distance between neighbours' fields.
    pub receptive_field: ReceptiveField,
}

/// A model's layers and totals; `Display` prints it as a table.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The input shape summarised.
    pub input_shape: Vec<usize>,
    /// The layers, in the order their outputs are computed (unused parameters last).
    pub layers: Vec<LayerSummary>,
    /// The model's output shape.
    pub output_shape: Vec<usize>,
    /// All parameter elements.
    pub total_params: usize,
    /// Parameter elements that require gradients.
    pub trainable_params: usize,
    /// Multiply-adds of the whole forward pass for the input batch.
    pub total_mult_adds: u64,
}

impl Summary {
    /// The row of layer `name`, if there is one.
    pub fn layer(&self, name: &str) -> Option<&LayerSummary> {
        self.layers.iter().find(|l| l.name == name)
    }
}

/// The device the model's parameters live on (the CPU reference device if it has none).
fn model_device(model: &dyn Module) -> Device {
    model
        .parameters()
        .first()
        .map_or_else(Device::cpu, |p| p.device().clone())
}

/// The layers of `model` applied to `x`, each with its output tensor (unrealized: realize those
/// you need), found in the graph its `forward` records. The model runs in evaluation mode
/// (batch statistics would make every pixel see the whole batch) and is put back in the mode
/// it was in afterwards. `x` is moved to the model's device first. Returns the layers and the
/// model's output.
pub fn layer_outputs(
    model: &dyn Module,
    x: &Tensor,
) -> Result<(Vec<crate::layers::FoundLayer>, Tensor)> {
    let x = x.to_device(&model_device(model))?;
    let was_training = model.is_training().unwrap_or(true);
    model.set_training(false);
    let y = model.forward(&x);
    model.set_training(was_training);
    let layers = find_layers(&x, &y, &model.named_parameters());
    Ok((layers, y))
}

/// The summary of `model` for an input of `input_shape` (e.g. `[1, 1, 28, 28]`; multiply-adds
/// are for the whole batch). Records `forward` on zeros of that shape (nothing is computed; see
/// [`layer_outputs`]). An error for an empty shape; a shape the model cannot take panics in its
/// `forward`, as any shape mistake in model code does.
pub fn summary(model: &dyn Module, input_shape: &[usize]) -> Result<Summary> {
    if input_shape.is_empty() || input_shape.contains(&0) {
        return Err(KilnError::Data(format!(
            "summary needs a non-empty input shape, got {input_shape:?}"
        )));
    }
    let x = Tensor::zeros(input_shape, &model_device(model));
    let (found, y) = layer_outputs(model, &x)?;
    let named = model.named_parameters();
    let params_of = |name: &str| -> usize {
        named
            .iter()
            .filter(|(n, _)| layer_prefix(n) == name)
            .map(|(_, t)| t.numel())
            .sum()
    };
    let layers: Vec<LayerSummary> = found
        .into_iter()
        .map(|l| LayerSummary {
            params: if matches!(
                l.kind,
                LayerKind::MaxPool2d | LayerKind::AvgPool2d | LayerKind::Add
            ) {
                0
            } else {
                params_of(&l.name)
            },
            output_shape: l.output.as_ref().map(|t| t.dims().to_vec()),
            name: l.name,
            kind: l.kind,
            mult_adds: l.mult_adds,
            receptive_field: l.receptive_field,
        })
        .collect();
    Ok(Summary {
        input_shape: input_shape.to_vec(),
        output_shape: y.dims().to_vec(),
        total_params: named.iter().map(|(_, t)| t.numel()).sum(),
        trainable_params: named
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(_, t)| t.numel())
            .sum(),
        total_mult_adds: layers.iter().map(|l| l.mult_adds).sum(),
        layers,
    })
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k > 0 && (s.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape_text(s: &[usize]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl fmt::Display for ReceptiveField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceptiveField::Local { size, jump } => {
                write!(f, "{}x{}", size[0], size[1])?;
                match jump {
                    Some(j) if j[0] == j[1] => write!(f, " / {}", j[0]),
                    Some(j) => write!(f, " / {}x{}", j[0], j[1]),
                    None => write!(f, " / -"),
                }
            }
            ReceptiveField::NotSpatial => write!(f, "-"),
            ReceptiveField::Unknown => write!(f, "?"),
        }
    }
}

impl fmt::Display for Summary {
    /// The table: layer (kind), output shape, parameters, multiply-adds, receptive field as
    /// `size / jump` in input pixels; then the totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            "layer (kind)",
            "output shape",
            "params",
            "mult-adds",
            "receptive field / jump",
        ];
        let rows: Vec<[String; 5]> = self
            .layers
            .iter()
            .map(|l| {
                [
                    format!("{} ({:?})", l.name, l.kind),
                    l.output_shape
                        .as_deref()
                        .map_or("-".to_string(), shape_text),
                    thousands(l.params as u64),
                    thousands(l.mult_adds),
                    l.receptive_field.to_string(),
                ]
            })
            .collect();
        let mut width = header.map(|h| h.len());
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let total: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
        let line = |f: &mut fmt::Formatter<'_>, c: &[String]| -> fmt::Result {
            writeln!(
                f,
                "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:<w4$}",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2],
                w3 = width[3],
                w4 = width[4]
            )
        };
        writeln!(f, "input {}", shape_text(&self.input_shape))?;
        writeln!(f, "{}", "=".repeat(total))?;
        line(f, &header.map(String::from))?;
        writeln!(f, "{}", "-".repeat(total))?;
        for r in &rows {
            line(f, r)?;
        }
        writeln!(f, "{}", "=".repeat(total))?;
        writeln!(f, "output {}", shape_text(&self.output_shape))?;
        writeln!(
            f,
            "total params: {} ({} trainable, {:.1} KB as f32)",
            thousands(self.total_params as u64),
            thousands(self.trainable_params as u64),
            self.total_params as f64 * 4.0 / 1024.0
        )?;
        write!(f, "total mult-adds: {}", thousands(self.total_mult_adds))
    }
}
