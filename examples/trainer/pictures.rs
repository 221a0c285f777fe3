//! The pictures of a training run: filters, feature maps, curves, confusion matrix (with the
//! class names) and the training step's plan.

use super::data::Data;
use super::fit::TestPass;
#[allow(unused_imports)]
use super::SPEAKS;
use kiln::nn::Module;
use kiln::prelude::*;
use kiln::viz::{self, LayerKind, Metrics};
use std::path::{Path, PathBuf};

/// How many convolutions the pictures show (filters and feature maps).
const CONVS_SHOWN: usize = 2;

/// The largest training plan (in kernels) rendered to SVG with Graphviz: LeNet-5's has about
/// 50, ResNet-20's about 380, which `dot` takes many minutes to lay out.
const MAX_KERNELS_RENDERED: usize = 150;

/// Writes the run's pictures and prints where they are.
pub(crate) fn pictures(
    dir: &Path,
    model: &dyn Module,
    data: &Data<'_>,
    metrics: &Metrics,
    test: Option<&TestPass>,
    plan_dot: Option<&str>,
) -> kiln::Result<()> {
    let mut written: Vec<PathBuf> = vec![];
    if !metrics.steps.is_empty() {
        viz::save_curves(metrics, dir.join("curves.png"))?;
        written.push(dir.join("curves.png"));
    }
    // The filters of the first convolutions: the first 4-D weights in the model's order.
    let conv_weights = model
        .named_parameters()
        .into_iter()
        .filter(|(name, w)| w.rank() == 4 && name.ends_with(".weight"))
        .take(CONVS_SHOWN);
    for (name, weight) in conv_weights {
        let layer = name.trim_end_matches(".weight").replace('.', "_");
        let path = dir.join(format!("{layer}_filters.png"));
        viz::save_filters(&weight, &path)?;
        written.push(path);
    }
    // One test image through the network: the outputs of its first convolutions, found in the
    // graph.
    let Some((digit, label)) = data.test_batches(Some(1)).next() else {
        return Err(KilnError::Data(
            "no test image to draw the feature maps of".into(),
        ));
    };
    let (layers, _) = viz::layer_outputs(model, &digit)?;
    let convs: Vec<(String, Tensor)> = layers
        .into_iter()
        .filter(|l| l.kind == LayerKind::Conv2d)
        .filter_map(|l| l.output.map(|t| (l.name, t)))
        .take(CONVS_SHOWN)
        .collect();
    Tensor::realize_all(&convs.iter().map(|(_, t)| t).collect::<Vec<_>>())?;
    let label = label.to_vec::<i32>()?[0] as usize;
    let input_caption = match data.classes.get(label) {
        // MNIST's classes are the digits.
        Some(name) if *name != label.to_string() => format!("test image 0 (label {name})"),
        _ => format!("test digit 0 (label {label})"),
    };
    let captions: Vec<String> = convs
        .iter()
        .map(|(name, t)| format!("{name} output {}: one tile per channel", t.shape()))
        .collect();
    let mut sections: Vec<(&str, &Tensor)> = vec![(&input_caption, &digit)];
    sections.extend(
        captions
            .iter()
            .zip(&convs)
            .map(|(c, (_, t))| (c.as_str(), t)),
    );
    viz::feature_maps(&sections)?.save(dir.join("feature_maps.png"))?;
    written.push(dir.join("feature_maps.png"));
    if let Some(test) = test {
        let classes = test
            .labels
            .iter()
            .chain(&test.preds)
            .max()
            .map_or(0, |m| m + 1);
        // The data's class names, numbered past them if a label or prediction is.
        let names: Vec<String> = (0..classes.max(data.classes.len()))
            .map(|c| {
                data.classes
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| c.to_string())
            })
            .collect();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        viz::save_confusion_matrix(&test.preds, &test.labels, &names, dir.join("confusion.png"))?;
        written.push(dir.join("confusion.png"));
    }
    if let Some(dot) = plan_dot {
        let path = dir.join("plan.dot");
        let kernels = dot
            .lines()
            .filter(|l| l.starts_with("  k") && l.contains("[shape=box"))
            .count();
        if kernels <= MAX_KERNELS_RENDERED {
            let rendered = viz::save_dot(dot, &path, "svg")?;
            written.extend(rendered);
        } else {
            // Graphviz takes many minutes to lay out a plan this large: write the DOT only.
            std::fs::write(&path, dot).map_err(|e| KilnError::Io {
                msg: format!("{}: cannot write: {e}", path.display()),
                source: e,
            })?;
            println!(
                "plan.dot: {kernels} kernels, too many to render here; `dot -Tsvg {} -o plan.svg` \
                 renders it",
                path.display()
            );
        }
        written.push(path);
    }
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}
