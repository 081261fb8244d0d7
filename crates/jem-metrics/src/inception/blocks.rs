//! The Inception blocks of pytorch-fid's FID Inception-v3.
//!
//! `Mixed_5*` are `FIDInceptionA`, `Mixed_6a` torchvision's `InceptionB`, `Mixed_6b..e`
//! `FIDInceptionC`, `Mixed_7a` torchvision's `InceptionD`, `Mixed_7b` `FIDInceptionE_1` and
//! `Mixed_7c` `FIDInceptionE_2`. The FID variants differ from torchvision's in their pool
//! branch: average pooling that ignores the padding (A, C, E_1) and max pooling (E_2).
//! The 1x1 convolutions that read a block's input are run fused (one GEMM).

use candle_core::{Result as CResult, Tensor};

use super::layers::{
    ConvBn, FusedConvs, Loader, avg_pool_3x3_same, max_pool_3x3_s2, max_pool_3x3_same,
};
use crate::Result;

/// A `BasicConv2d` named `{block}.{name}`.
fn conv(
    l: &Loader,
    block: &str,
    name: &str,
    io: (usize, usize),
    k: (usize, usize),
    stride: usize,
    pad: (usize, usize),
) -> Result<ConvBn> {
    l.conv_bn(&format!("{block}.{name}"), io, k, stride, pad)
}

/// A 1x1 `BasicConv2d`.
fn conv1(l: &Loader, block: &str, name: &str, cin: usize, cout: usize) -> Result<ConvBn> {
    conv(l, block, name, (cin, cout), (1, 1), 1, (0, 0))
}

const P0: (usize, usize) = (0, 0);
const P1: (usize, usize) = (1, 1);
const K3: (usize, usize) = (3, 3);

/// `FIDInceptionA`: output `224 + pool_features` channels.
pub(crate) struct BlockA {
    inputs: FusedConvs, // branch1x1, branch5x5_1, branch3x3dbl_1
    b5_2: ConvBn,
    b3_2: ConvBn,
    b3_3: ConvBn,
    pool: ConvBn,
}

impl BlockA {
    pub(crate) fn load(l: &Loader, b: &str, cin: usize, pool_features: usize) -> Result<Self> {
        Ok(Self {
            inputs: FusedConvs::new(&[
                conv1(l, b, "branch1x1", cin, 64)?,
                conv1(l, b, "branch5x5_1", cin, 48)?,
                conv1(l, b, "branch3x3dbl_1", cin, 64)?,
            ])?,
            b5_2: conv(l, b, "branch5x5_2", (48, 64), (5, 5), 1, (2, 2))?,
            b3_2: conv(l, b, "branch3x3dbl_2", (64, 96), K3, 1, P1)?,
            b3_3: conv(l, b, "branch3x3dbl_3", (96, 96), K3, 1, P1)?,
            pool: conv1(l, b, "branch_pool", cin, pool_features)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let [b1, b5, b3] = first3(self.inputs.forward(x)?)?;
        let b5 = self.b5_2.forward(&b5)?;
        let b3 = self.b3_3.forward(&self.b3_2.forward(&b3)?)?;
        let pool = self.pool.forward(&avg_pool_3x3_same(x)?)?;
        Tensor::cat(&[b1, b5, b3, pool], 1)
    }
}

/// torchvision's `InceptionB` (grid reduction 35 -> 17): `480 + cin` channels.
pub(crate) struct BlockB {
    b3: ConvBn,
    dbl_1: ConvBn,
    dbl_2: ConvBn,
    dbl_3: ConvBn,
}

impl BlockB {
    pub(crate) fn load(l: &Loader, b: &str, cin: usize) -> Result<Self> {
        Ok(Self {
            b3: conv(l, b, "branch3x3", (cin, 384), K3, 2, P0)?,
            dbl_1: conv1(l, b, "branch3x3dbl_1", cin, 64)?,
            dbl_2: conv(l, b, "branch3x3dbl_2", (64, 96), K3, 1, P1)?,
            dbl_3: conv(l, b, "branch3x3dbl_3", (96, 96), K3, 2, P0)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let b3 = self.b3.forward(x)?;
        let dbl = self.dbl_1.forward(x)?;
        let dbl = self.dbl_3.forward(&self.dbl_2.forward(&dbl)?)?;
        Tensor::cat(&[b3, dbl, max_pool_3x3_s2(x)?], 1)
    }
}

/// `FIDInceptionC` (factorized 7x7 convolutions): 768 channels.
pub(crate) struct BlockC {
    inputs: FusedConvs, // branch1x1, branch7x7_1, branch7x7dbl_1
    b7: [ConvBn; 2],
    dbl: [ConvBn; 4],
    pool: ConvBn,
}

impl BlockC {
    pub(crate) fn load(l: &Loader, b: &str, cin: usize, c7: usize) -> Result<Self> {
        let (k17, k71, p17, p71) = ((1, 7), (7, 1), (0, 3), (3, 0));
        Ok(Self {
            inputs: FusedConvs::new(&[
                conv1(l, b, "branch1x1", cin, 192)?,
                conv1(l, b, "branch7x7_1", cin, c7)?,
                conv1(l, b, "branch7x7dbl_1", cin, c7)?,
            ])?,
            b7: [
                conv(l, b, "branch7x7_2", (c7, c7), k17, 1, p17)?,
                conv(l, b, "branch7x7_3", (c7, 192), k71, 1, p71)?,
            ],
            dbl: [
                conv(l, b, "branch7x7dbl_2", (c7, c7), k71, 1, p71)?,
                conv(l, b, "branch7x7dbl_3", (c7, c7), k17, 1, p17)?,
                conv(l, b, "branch7x7dbl_4", (c7, c7), k71, 1, p71)?,
                conv(l, b, "branch7x7dbl_5", (c7, 192), k17, 1, p17)?,
            ],
            pool: conv1(l, b, "branch_pool", cin, 192)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let [b1, mut b7, mut dbl] = first3(self.inputs.forward(x)?)?;
        for c in &self.b7 {
            b7 = c.forward(&b7)?;
        }
        for c in &self.dbl {
            dbl = c.forward(&dbl)?;
        }
        let pool = self.pool.forward(&avg_pool_3x3_same(x)?)?;
        Tensor::cat(&[b1, b7, dbl, pool], 1)
    }
}

/// torchvision's `InceptionD` (grid reduction 17 -> 8): `512 + cin` channels.
pub(crate) struct BlockD {
    inputs: FusedConvs, // branch3x3_1, branch7x7x3_1
    b3_2: ConvBn,
    b7: [ConvBn; 3],
}

impl BlockD {
    pub(crate) fn load(l: &Loader, b: &str, cin: usize) -> Result<Self> {
        Ok(Self {
            inputs: FusedConvs::new(&[
                conv1(l, b, "branch3x3_1", cin, 192)?,
                conv1(l, b, "branch7x7x3_1", cin, 192)?,
            ])?,
            b3_2: conv(l, b, "branch3x3_2", (192, 320), K3, 2, P0)?,
            b7: [
                conv(l, b, "branch7x7x3_2", (192, 192), (1, 7), 1, (0, 3))?,
                conv(l, b, "branch7x7x3_3", (192, 192), (7, 1), 1, (3, 0))?,
                conv(l, b, "branch7x7x3_4", (192, 192), K3, 2, P0)?,
            ],
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut outs = self.inputs.forward(x)?.into_iter();
        let (Some(b3), Some(mut b7)) = (outs.next(), outs.next()) else {
            candle_core::bail!("fused convolution gave too few outputs")
        };
        let b3 = self.b3_2.forward(&b3)?;
        for c in &self.b7 {
            b7 = c.forward(&b7)?;
        }
        Tensor::cat(&[b3, b7, max_pool_3x3_s2(x)?], 1)
    }
}

/// The pool branch of an E block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EPool {
    /// `FIDInceptionE_1`: average pool 3x3, stride 1, padding 1, padding not counted.
    Average,
    /// `FIDInceptionE_2`: max pool 3x3, stride 1, padding 1.
    Max,
}

/// `FIDInceptionE_1` / `FIDInceptionE_2` (expanded filter bank): 2048 channels.
pub(crate) struct BlockE {
    inputs: FusedConvs, // branch1x1, branch3x3_1, branch3x3dbl_1
    b3_2a: ConvBn,
    b3_2b: ConvBn,
    dbl_2: ConvBn,
    dbl_3a: ConvBn,
    dbl_3b: ConvBn,
    pool_conv: ConvBn,
    pool: EPool,
}

impl BlockE {
    pub(crate) fn load(l: &Loader, b: &str, cin: usize, pool: EPool) -> Result<Self> {
        let (k13, k31, p13, p31) = ((1, 3), (3, 1), (0, 1), (1, 0));
        Ok(Self {
            inputs: FusedConvs::new(&[
                conv1(l, b, "branch1x1", cin, 320)?,
                conv1(l, b, "branch3x3_1", cin, 384)?,
                conv1(l, b, "branch3x3dbl_1", cin, 448)?,
            ])?,
            b3_2a: conv(l, b, "branch3x3_2a", (384, 384), k13, 1, p13)?,
            b3_2b: conv(l, b, "branch3x3_2b", (384, 384), k31, 1, p31)?,
            dbl_2: conv(l, b, "branch3x3dbl_2", (448, 384), K3, 1, P1)?,
            dbl_3a: conv(l, b, "branch3x3dbl_3a", (384, 384), k13, 1, p13)?,
            dbl_3b: conv(l, b, "branch3x3dbl_3b", (384, 384), k31, 1, p31)?,
            pool_conv: conv1(l, b, "branch_pool", cin, 192)?,
            pool,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let [b1, b3, dbl] = first3(self.inputs.forward(x)?)?;
        let dbl = self.dbl_2.forward(&dbl)?;
        let pooled = match self.pool {
            EPool::Average => avg_pool_3x3_same(x)?,
            EPool::Max => max_pool_3x3_same(x)?,
        };
        Tensor::cat(
            &[
                b1,
                self.b3_2a.forward(&b3)?,
                self.b3_2b.forward(&b3)?,
                self.dbl_3a.forward(&dbl)?,
                self.dbl_3b.forward(&dbl)?,
                self.pool_conv.forward(&pooled)?,
            ],
            1,
        )
    }
}

fn first3(v: Vec<Tensor>) -> CResult<[Tensor; 3]> {
    match <[Tensor; 3]>::try_from(v) {
        Ok(a) => Ok(a),
        Err(v) => candle_core::bail!("fused convolution gave {} outputs, expected 3", v.len()),
    }
}
