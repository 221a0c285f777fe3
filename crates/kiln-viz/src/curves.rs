//! Training curves: a recorder of per-step and per-epoch metrics, its CSV, and a PNG plot of loss
//! and accuracy against the step with axes and a legend.

use crate::picture::{register_font, save_png};
use image::RgbImage;
use kiln_core::{KilnError, Result};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// One training step's numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepRecord {
    /// Step number, from 0, counted over the whole run.
    pub step: usize,
    /// The epoch the step belongs to, from 1.
    pub epoch: usize,
    /// The batch's loss.
    pub loss: f64,
    /// The batch's accuracy in [0, 1].
    pub accuracy: f64,
    /// Training throughput when the step was recorded (images per second).
    pub images_per_s: f64,
}

/// One epoch's numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochRecord {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Steps recorded up to the end of this epoch (the x position of its points in the plot).
    pub steps_done: usize,
    /// Mean of the epoch's step losses.
    pub train_loss: f64,
    /// Mean of the epoch's step accuracies.
    pub train_accuracy: f64,
    /// Loss on the test set after the epoch, if measured.
    pub test_loss: Option<f64>,
    /// Accuracy on the test set after the epoch, in [0, 1], if measured.
    pub test_accuracy: Option<f64>,
}

/// A recorder of training metrics: push every step with [`Metrics::push_step`], close every
/// epoch with [`Metrics::end_epoch`]; then [`save_curves`] plots them and
/// [`Metrics::save_csv`] writes them as CSV.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Every step, in order.
    pub steps: Vec<StepRecord>,
    /// Every closed epoch, in order.
    pub epochs: Vec<EpochRecord>,
}

impl Metrics {
    /// An empty recorder.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Records one step of `epoch` (from 1): its loss, accuracy in [0, 1] and throughput. The
    /// step number is the count of steps recorded before it.
    pub fn push_step(&mut self, epoch: usize, loss: f64, accuracy: f64, images_per_s: f64) {
        self.steps.push(StepRecord {
            step: self.steps.len(),
            epoch,
            loss,
            accuracy,
            images_per_s,
        });
    }

    /// Closes `epoch`: its training loss and accuracy are the means of its recorded steps (0 if
    /// it has none); the test numbers are those given. Returns the record.
    pub fn end_epoch(
        &mut self,
        epoch: usize,
        test_loss: Option<f64>,
        test_accuracy: Option<f64>,
    ) -> EpochRecord {
        let of_epoch: Vec<&StepRecord> = self.steps.iter().filter(|s| s.epoch == epoch).collect();
        let n = of_epoch.len().max(1) as f64;
        let record = EpochRecord {
            epoch,
            steps_done: self.steps.len(),
            train_loss: of_epoch.iter().map(|s| s.loss).sum::<f64>() / n,
            train_accuracy: of_epoch.iter().map(|s| s.accuracy).sum::<f64>() / n,
            test_loss,
            test_accuracy,
        };
        self.epochs.push(record);
        record
    }

    /// The metrics as CSV with the header `step,epoch,split,loss,accuracy,images_per_s`: one
    /// `train_step` row per step, then per epoch a `train_epoch` row (the means) and a
    /// `test_epoch` row (if a test number was given) at the epoch's last step. Empty fields for
    /// what was not measured.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("step,epoch,split,loss,accuracy,images_per_s\n");
        let opt = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{},{},train_step,{},{},{:.1}",
                s.step, s.epoch, s.loss, s.accuracy, s.images_per_s
            );
        }
        for e in &self.epochs {
            let last = e.steps_done.saturating_sub(1);
            let _ = writeln!(
                out,
                "{last},{},train_epoch,{},{},",
                e.epoch, e.train_loss, e.train_accuracy
            );
            if e.test_loss.is_some() || e.test_accuracy.is_some() {
                let _ = writeln!(
                    out,
                    "{last},{},test_epoch,{},{},",
                    e.epoch,
                    opt(e.test_loss),
                    opt(e.test_accuracy)
                );
            }
        }
        out
    }

    /// Writes [`Metrics::to_csv`] to `path` (creating the parent directory); errors name the file.
    pub fn save_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| KilnError::Io {
                msg: format!("{}: cannot create the directory: {e}", dir.display()),
                source: e,
            })?;
        }
        std::fs::write(path, self.to_csv()).map_err(|e| KilnError::Io {
            msg: format!("{}: cannot write: {e}", path.display()),
            source: e,
        })
    }
}

/// Width of the curves picture in pixels.
pub const CURVES_WIDTH: u32 = 1100;
/// Height of the curves picture in pixels.
pub const CURVES_HEIGHT: u32 = 420;

/// Colours: per-step train (light), per-epoch train, per-epoch test.
const STEP_COLOR: RGBColor = RGBColor(158, 202, 225);
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const TEST_COLOR: RGBColor = RGBColor(255, 127, 14);

/// One panel's data: (x, y) per step, per epoch for training and for testing.
struct Series {
    title: &'static str,
    steps: Vec<(f64, f64)>,
    train: Vec<(f64, f64)>,
    test: Vec<(f64, f64)>,
}

fn plot_error(e: impl std::fmt::Display) -> KilnError {
    KilnError::Data(format!("drawing the training curves: {e}"))
}

/// Draws one panel (loss or accuracy) into `area`, its legend at `legend`.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &Series,
    max_step: f64,
    legend: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let ys = s.steps.iter().chain(&s.train).chain(&s.test).map(|p| p.1);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        let pad = ((hi - lo) * 0.05).max(1e-3);
        (lo - pad, hi + pad)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(s.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..max_step.max(1.0), lo..hi)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(s.title)
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE)
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(s.steps.iter().copied(), STEP_COLOR))
        .map_err(plot_error)?
        .label("train, per step")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], STEP_COLOR));
    for (points, color, label) in [
        (&s.train, TRAIN_COLOR, "train, per epoch"),
        (&s.test, TEST_COLOR, "test, per epoch"),
    ] {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(legend)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// The curves picture ([`CURVES_WIDTH`] x [`CURVES_HEIGHT`]): loss on the left, accuracy in
/// percent on the right, against the step; each panel has the per-step training values (thin,
/// light), and the per-epoch training means and test values (thick, with a dot per epoch at the
/// epoch's last step), axes with labels and a legend. An error if no step was recorded.
pub fn curves_image(metrics: &Metrics) -> Result<RgbImage> {
    if metrics.steps.is_empty() {
        return Err(KilnError::Data(
            "training curves: no step was recorded (call Metrics::push_step)".into(),
        ));
    }
    register_font();
    let x_of = |e: &EpochRecord| e.steps_done.saturating_sub(1) as f64;
    let loss = Series {
        title: "loss",
        steps: metrics
            .steps
            .iter()
            .map(|s| (s.step as f64, s.loss))
            .collect(),
        train: metrics
            .epochs
            .iter()
            .map(|e| (x_of(e), e.train_loss))
            .collect(),
        test: metrics
            .epochs
            .iter()
            .filter_map(|e| e.test_loss.map(|l| (x_of(e), l)))
            .collect(),
    };
    let accuracy = Series {
        title: "accuracy (%)",
        steps: metrics
            .steps
            .iter()
            .map(|s| (s.step as f64, 100.0 * s.accuracy))
            .collect(),
        train: metrics
            .epochs
            .iter()
            .map(|e| (x_of(e), 100.0 * e.train_accuracy))
            .collect(),
        test: metrics
            .epochs
            .iter()
            .filter_map(|e| e.test_accuracy.map(|a| (x_of(e), 100.0 * a)))
            .collect(),
    };
    let max_step = metrics.steps.len().saturating_sub(1) as f64;
    let mut buf = vec![0u8; (CURVES_WIDTH * CURVES_HEIGHT * 3) as usize];
    {
        let root =
            BitMapBackend::with_buffer(&mut buf, (CURVES_WIDTH, CURVES_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (left, right) = root.split_horizontally(CURVES_WIDTH / 2);
        // Loss falls and accuracy rises: their legends go where the curves usually are not.
        panel(&left, &loss, max_step, SeriesLabelPosition::UpperRight)?;
        panel(&right, &accuracy, max_step, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(plot_error)?;
    }
    Ok(RgbImage::from_raw(CURVES_WIDTH, CURVES_HEIGHT, buf).expect("w * h * 3 bytes"))
}

/// Writes [`curves_image`] of `metrics` as a PNG at `path`.
pub fn save_curves(metrics: &Metrics, path: impl AsRef<Path>) -> Result<()> {
    save_png(&curves_image(metrics)?, path.as_ref())
}
