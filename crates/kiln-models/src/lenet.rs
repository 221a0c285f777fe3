//! LeNet-5 (LeCun et al., 1998) as CNN courses write it in PyTorch today: ReLU instead of the
//! scaled tanh, max-pooling instead of trainable subsampling, and a padded first convolution so
//! that 28x28 MNIST digits give the paper's 32x32 geometry.

use crate::{check_parameter, check_same_device, FineTune};
use kiln_core::export::{GraphBuilder, ValueId};
use kiln_core::nn::{Conv2d, Linear, MaxPool2d, Module, ParamBuilder};
use kiln_core::{Conv2dOptions, Result, Tensor};

/// LeNet-5 for `[N, 1, 28, 28]` images and 10 classes: conv1 1->6 (5x5, pad 2) -> ReLU ->
/// max-pool 2 -> conv2 6->16 (5x5) -> ReLU -> max-pool 2 -> flatten (400) -> fc1 120 -> ReLU ->
/// fc2 84 -> ReLU -> fc3 10 (logits). 61,706 parameters.
pub struct LeNet5 {
    /// 1 -> 6 channels, 5x5, padding 2: `[N, 1, 28, 28] -> [N, 6, 28, 28]`
    pub conv1: Conv2d,
    /// 6 -> 16 channels, 5x5: `[N, 6, 14, 14] -> [N, 16, 10, 10]`
    pub conv2: Conv2d,
    /// 400 -> 120
    pub fc1: Linear,
    /// 120 -> 84
    pub fc2: Linear,
    /// 84 -> 10
    pub fc3: Linear,
    pool: MaxPool2d,
}

impl LeNet5 {
    /// A LeNet-5 with PyTorch's default initialisation, its parameters drawn by `pb` (on its
    /// device, from its seed and their names).
    ///
    /// ```
    /// # use kiln_core::{Device, nn::{Module, ParamBuilder}};
    /// let net = kiln_models::LeNet5::new(&ParamBuilder::new(&Device::cpu(), 42));
    /// assert_eq!(net.num_parameters(), 61_706);
    /// ```
    pub fn new(pb: &ParamBuilder) -> LeNet5 {
        LeNet5::with_channels(1, 10, pb)
            .expect("LeNet-5's 61,706 parameters fit every device (WebGPU guarantees 256 MiB)")
    }
    /// The same network for `[N, in_channels, 28, 28]` images and `classes` classes (the same
    /// weights as [`LeNet5::new`] for 1 channel and 10 classes). Errors
    /// ([`kiln_core::KilnError::BufferTooLarge`]) when `in_channels` or `classes` make a weight
    /// larger than `pb`'s device can hold.
    pub fn with_channels(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<LeNet5> {
        check_parameter(pb, "conv1.weight", &[6, in_channels, 5, 5])?;
        check_parameter(pb, "fc3.weight", &[classes, 84])?;
        let conv1_opts = Conv2dOptions::default().padding(2);
        Ok(LeNet5 {
            conv1: Conv2d::new(in_channels, 6, 5, conv1_opts, &pb.pp("conv1")),
            conv2: Conv2d::new(6, 16, 5, Conv2dOptions::default(), &pb.pp("conv2")),
            fc1: Linear::new(16 * 5 * 5, 120, &pb.pp("fc1")),
            fc2: Linear::new(120, 84, &pb.pp("fc2")),
            fc3: Linear::new(84, classes, &pb.pp("fc3")),
            pool: MaxPool2d::new(2),
        })
    }
    /// Replaces the classifier `fc3` with a new `84 -> classes` layer drawn by `pb` (the
    /// model's builder: the values of `LeNet5::with_channels(.., classes, pb)`'s `fc3`). Errors
    /// as [`FineTune::replace_head`] says.
    pub fn replace_head(&mut self, classes: usize, pb: &ParamBuilder) -> Result<()> {
        check_same_device(pb, &self.fc3.weight)?;
        check_parameter(pb, "fc3.weight", &[classes, 84])?;
        self.fc3 = Linear::new(84, classes, &pb.pp("fc3"));
        Ok(())
    }
}

impl FineTune for LeNet5 {
    fn head_name(&self) -> &'static str {
        "fc3"
    }
    fn classes(&self) -> usize {
        self.fc3.weight.dims()[0]
    }
    fn replace_head(&mut self, classes: usize, pb: &ParamBuilder) -> Result<()> {
        LeNet5::replace_head(self, classes, pb)
    }
}

impl Module for LeNet5 {
    /// `[N, 1, 28, 28]` images -> `[N, 10]` logits.
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.pool.forward(&self.conv1.forward(x).relu());
        let x = self.pool.forward(&self.conv2.forward(&x).relu());
        let x = x.flatten(1, 3);
        let x = self.fc1.forward(&x).relu();
        let x = self.fc2.forward(&x).relu();
        self.fc3.forward(&x)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        let x = g.child("conv1", &self.conv1, x)?;
        let x = g.unary("Relu", x);
        let x = g.child("pool", &self.pool, x)?;
        let x = g.child("conv2", &self.conv2, x)?;
        let x = g.unary("Relu", x);
        let x = g.child("pool", &self.pool, x)?;
        let x = g.flatten(x);
        let x = g.child("fc1", &self.fc1, x)?;
        let x = g.unary("Relu", x);
        let x = g.child("fc2", &self.fc2, x)?;
        let x = g.unary("Relu", x);
        g.child("fc3", &self.fc3, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![];
        for (name, layer) in [
            ("conv1", &self.conv1 as &dyn Module),
            ("conv2", &self.conv2),
            ("fc1", &self.fc1),
            ("fc2", &self.fc2),
            ("fc3", &self.fc3),
        ] {
            v.extend(kiln_core::nn::prefixed(name, layer));
        }
        v
    }
}
