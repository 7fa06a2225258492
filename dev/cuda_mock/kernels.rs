//! Stand-in for the whole src/cuda/kernels/ folder, copied there as mod.rs by dev/cuda_mock/run.sh:
//! each wrapper calls its CPU twin on host memory. The wrappers are generic over the storage type,
//! as the real ones are: with `f32` views they call the fp32 layers of src/cpu/, with `Bf16` views
//! the CPU's bf16 layers (src/cpu/bf16.rs), on the widened numbers, and store what those wrote (bf16
//! numbers already, so storing them back as 16-bit words is exact).
use super::context::{Dev, Gpu};
use super::storage::{Bf16, Storage};
use crate::cpu::{attention, bf16, encoder, gelu, layernorm, matmul, residual, softmax_crossentropy};
use crate::precision::{round_bf16, Precision};
use anyhow::Result;

pub struct KernelSource {
    pub file: &'static str,
    pub source: &'static str,
    pub kernels: &'static [&'static str],
}
pub const SOURCES: [KernelSource; 0] = [];
/// The real one returns the cubin; the stand-ins compile nothing.
pub fn compile(s: &KernelSource, arch: &str) -> Result<Vec<u8>> {
    anyhow::bail!("dev/cuda_mock compiles no kernels (asked for {} for {arch})", s.file)
}

/// A device tensor's numbers as f32s (exact).
fn get<T: Storage>(d: Dev<T>) -> Vec<f32> {
    d.host().iter().map(|&x| x.to_f32()).collect()
}
/// Stores f32s into a device tensor (rounding to nearest even for bf16; the bf16 layers wrote bf16 numbers already).
fn put<T: Storage>(d: Dev<T>, xs: &[f32]) {
    for (o, &x) in d.host().iter_mut().zip(xs) {
        *o = T::from_f32(x);
    }
}
fn is_bf16<T: Storage>() -> bool {
    T::PRECISION == Precision::Bf16
}

#[allow(clippy::too_many_arguments)]
impl Gpu {
    pub fn encoder_forward<T: Storage>(&self, out: Dev<T>, inp: Dev<u32>, wte: Dev<T>, wpe: Dev<T>, b: usize, t: usize, c: usize) -> Result<()> {
        let mut o = get(out);
        let f = if is_bf16::<T>() { bf16::encoder_forward } else { encoder::encoder_forward };
        f(&mut o, inp.host(), &get(wte), &get(wpe), b, t, c);
        put(out, &o);
        Ok(())
    }
    pub fn encoder_backward<T: Storage>(&self, dwte: Dev<f32>, dwpe: Dev<f32>, dout: Dev<T>, inp: Dev<u32>, b: usize, t: usize, c: usize) -> Result<()> {
        encoder::encoder_backward(dwte.host(), dwpe.host(), &get(dout), inp.host(), b, t, c);
        Ok(())
    }
    pub fn layernorm_forward<T: Storage>(&self, out: Dev<T>, mean: Dev<f32>, rstd: Dev<f32>, inp: Dev<T>, weight: Dev<T>, bias: Dev<T>, bt: usize, c: usize) -> Result<()> {
        assert!(mean.len() == bt && rstd.len() == bt && weight.len() == c && bias.len() == c);
        let mut o = get(out);
        let f = if is_bf16::<T>() { bf16::layernorm_forward } else { layernorm::layernorm_forward };
        f(&mut o, mean.host(), rstd.host(), &get(inp), &get(weight), &get(bias), bt, c);
        put(out, &o);
        Ok(())
    }
    pub fn layernorm_backward<T: Storage>(&self, dinp: Dev<T>, dweight: Dev<f32>, dbias: Dev<f32>, dout: Dev<T>, inp: Dev<T>, weight: Dev<T>, mean: Dev<f32>, rstd: Dev<f32>, bt: usize, c: usize) -> Result<()> {
        assert!(dweight.len() == c && dbias.len() == c && weight.len() == c && mean.len() == bt && rstd.len() == bt && inp.len() == bt * c && dout.len() == bt * c);
        let mut d = get(dinp);
        let f = if is_bf16::<T>() { bf16::layernorm_backward } else { layernorm::layernorm_backward };
        f(&mut d, dweight.host(), dbias.host(), &get(dout), &get(inp), &get(weight), mean.host(), rstd.host(), bt, c);
        put(dinp, &d);
        Ok(())
    }
    pub fn matmul_forward<T: Storage>(&self, out: Dev<T>, inp: Dev<T>, weight: Dev<T>, bias: Option<Dev<T>>, bt: usize, c: usize, oc: usize) -> Result<()> {
        assert!(bias.is_none_or(|b| b.len() == oc));
        let mut o = get(out);
        let bias = bias.map(get);
        let f = if is_bf16::<T>() { bf16::matmul_forward } else { matmul::matmul_forward };
        f(&mut o, &get(inp), &get(weight), bias.as_deref(), bt, c, oc);
        put(out, &o);
        Ok(())
    }
    /// The stand-ins call the CPU's matmul, which does not split K.
    pub fn matmul_dweight_slices(&self, _bt: usize, _c: usize, _oc: usize) -> usize {
        1
    }
    pub fn matmul_backward<T: Storage>(&self, dinp: Dev<T>, dweight: Dev<f32>, dbias: Option<Dev<f32>>, dout: Dev<T>, inp: Dev<T>, weight: Dev<T>, bt: usize, c: usize, oc: usize) -> Result<()> {
        assert!(inp.len() == bt * c && weight.len() == oc * c);
        let mut d = get(dinp);
        let f = if is_bf16::<T>() { bf16::matmul_backward } else { matmul::matmul_backward };
        f(&mut d, dweight.host(), dbias.map(|b| b.host()), &get(dout), &get(inp), &get(weight), bt, c, oc);
        put(dinp, &d);
        Ok(())
    }
    /// As the real `matmul_gelu_forward`: cuBLASLt's fused GELU with `--matmul cublas` in bf16,
    /// else the matmul, then the GELU.
    pub fn matmul_gelu_forward<T: Storage>(&self, pre_gelu: Dev<T>, out: Dev<T>, inp: Dev<T>, weight: Dev<T>, bias: Option<Dev<T>>, bt: usize, c: usize, oc: usize) -> Result<()> {
        if self.matmul == super::context::Matmul::Cublas && is_bf16::<T>() {
            return self.cublaslt_matmul_gelu_forward(pre_gelu, out, inp, weight, bias, bt, c, oc);
        }
        self.matmul_forward(pre_gelu, inp, weight, bias, bt, c, oc)?;
        self.gelu_forward(out, pre_gelu)
    }
    /// Stand-in for cuBLASLt's GEMM with the BIAS epilogue: the matmul of the precision, one rounding.
    pub fn cublaslt_matmul_forward<T: Storage>(&self, out: Dev<T>, inp: Dev<T>, weight: Dev<T>, bias: Option<Dev<T>>, bt: usize, c: usize, oc: usize) -> Result<()> {
        self.matmul_forward(out, inp, weight, bias, bt, c, oc)
    }
    /// Stand-in for cuBLASLt's GEMM with the GELU_AUX_BIAS epilogue: the fp32 sums (the readable
    /// fp32 matmul of the bf16 numbers, as src/cpu/bf16.rs's matmul sums them), then the aux
    /// pre_gelu rounded once, and the GELU taken of the unrounded sums and rounded once.
    pub fn cublaslt_matmul_gelu_forward<T: Storage>(&self, pre_gelu: Dev<T>, out: Dev<T>, inp: Dev<T>, weight: Dev<T>, bias: Option<Dev<T>>, bt: usize, c: usize, oc: usize) -> Result<()> {
        assert!(pre_gelu.len() == bt * oc && out.len() == bt * oc && bias.is_none_or(|b| b.len() == oc));
        if !oc.is_multiple_of(8) {
            anyhow::bail!("cuBLASLt's fused GELU needs the output width OC = {oc} to be a multiple of 8 (the aux buffer's leading dimension)");
        }
        let mut pre = vec![0.0; bt * oc];
        let bias = bias.map(get);
        matmul::matmul_forward(&mut pre, &get(inp), &get(weight), bias.as_deref(), bt, c, oc);
        let mut o = vec![0.0; bt * oc];
        gelu::gelu_forward(&mut o, &pre);
        put(pre_gelu, &pre);
        put(out, &o);
        Ok(())
    }
    /// Stand-in for cuBLASLt's backward GEMMs (beta = 1, BGRADB added into dbias): the matmul
    /// backward of the precision.
    pub fn cublaslt_matmul_backward<T: Storage>(&self, dinp: Dev<T>, dweight: Dev<f32>, dbias: Option<Dev<f32>>, dout: Dev<T>, inp: Dev<T>, weight: Dev<T>, bt: usize, c: usize, oc: usize) -> Result<()> {
        self.matmul_backward(dinp, dweight, dbias, dout, inp, weight, bt, c, oc)
    }
    pub fn attention_forward<T: Storage>(&self, out: Dev<T>, lse: Dev<f32>, inp: Dev<T>, b: usize, t: usize, c: usize, nh: usize) -> Result<()> {
        assert!(lse.len() == b * nh * t && out.len() == b * t * c && inp.len() == b * t * 3 * c);
        let mut o = get(out);
        let f = if is_bf16::<T>() { bf16::attention_forward } else { attention::attention_forward };
        f(&mut o, lse.host(), &get(inp), b, t, c, nh);
        put(out, &o);
        Ok(())
    }
    pub fn attention_backward<T: Storage>(&self, dinp: Dev<T>, delta: Dev<f32>, dout: Dev<T>, inp: Dev<T>, out: Dev<T>, lse: Dev<f32>, b: usize, t: usize, c: usize, nh: usize) -> Result<()> {
        assert!(delta.len() == b * nh * t && lse.len() == b * nh * t && inp.len() == b * t * 3 * c && dout.len() == b * t * c && out.len() == b * t * c);
        let mut d = get(dinp);
        let f = if is_bf16::<T>() { bf16::attention_backward } else { attention::attention_backward };
        f(&mut d, delta.host(), &get(dout), &get(inp), &get(out), lse.host(), b, t, c, nh);
        put(dinp, &d);
        Ok(())
    }
    pub fn gelu_forward<T: Storage>(&self, out: Dev<T>, inp: Dev<T>) -> Result<()> {
        let mut o = get(out);
        let f = if is_bf16::<T>() { bf16::gelu_forward } else { gelu::gelu_forward };
        f(&mut o, &get(inp));
        put(out, &o);
        Ok(())
    }
    pub fn gelu_backward<T: Storage>(&self, dinp: Dev<T>, inp: Dev<T>, dout: Dev<T>) -> Result<()> {
        let mut d = get(dinp);
        let f = if is_bf16::<T>() { bf16::gelu_backward } else { gelu::gelu_backward };
        f(&mut d, &get(inp), &get(dout));
        put(dinp, &d);
        Ok(())
    }
    pub fn residual_forward<T: Storage>(&self, out: Dev<T>, inp1: Dev<T>, inp2: Dev<T>) -> Result<()> {
        let mut o = get(out);
        let f = if is_bf16::<T>() { bf16::residual_forward } else { residual::residual_forward };
        f(&mut o, &get(inp1), &get(inp2));
        put(out, &o);
        Ok(())
    }
    pub fn residual_backward<T: Storage>(&self, dinp1: Dev<T>, dinp2: Dev<T>, dout: Dev<T>) -> Result<()> {
        let (mut d1, mut d2) = (get(dinp1), get(dinp2));
        let f = if is_bf16::<T>() { bf16::residual_backward } else { residual::residual_backward };
        f(&mut d1, &mut d2, &get(dout));
        put(dinp1, &d1);
        put(dinp2, &d2);
        Ok(())
    }
    pub fn crossentropy_forward<T: Storage>(&self, losses: Dev<f32>, lse: Dev<f32>, logits: Dev<T>, targets: Dev<u32>, bt: usize, v: usize, vp: usize) -> Result<()> {
        assert!(targets.len() == bt && logits.len() == bt * vp && lse.len() == bt);
        // the same in both precisions: bf16 logits read, everything fp32
        softmax_crossentropy::crossentropy_forward(losses.host(), lse.host(), &get(logits), targets.host(), bt, v, vp);
        Ok(())
    }
    pub fn crossentropy_softmax_backward<T: Storage>(&self, logits: Dev<T>, dlosses: Dev<f32>, lse: Dev<f32>, targets: Dev<u32>, bt: usize, v: usize, vp: usize) -> Result<()> {
        assert!(dlosses.len() == bt && targets.len() == bt && lse.len() == bt && logits.len() == bt * vp);
        let mut l = get(logits);
        let f = if is_bf16::<T>() { bf16::crossentropy_softmax_backward } else { softmax_crossentropy::crossentropy_softmax_backward };
        f(&mut l, dlosses.host(), lse.host(), targets.host(), bt, v, vp);
        put(logits, &l);
        Ok(())
    }
    pub fn adamw_update(&self, params: Dev<f32>, grads: Dev<f32>, m: Dev<f32>, v: Dev<f32>, lr: f32, beta1: f32, beta2: f32, beta1_correction: f32, beta2_correction: f32, eps: f32, weight_decay: f32, grad_scale: f32) -> Result<()> {
        let (p, g, m, v) = (params.host(), grads.host(), m.host(), v.host());
        assert!(g.len() == p.len() && m.len() == p.len() && v.len() == p.len());
        for i in 0..p.len() {
            let gi = g[i] * grad_scale;
            m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
            v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
            let m_hat = m[i] / beta1_correction;
            let v_hat = v[i] / beta2_correction;
            p[i] -= lr * (m_hat / (v_hat.sqrt() + eps) + weight_decay * p[i]);
        }
        Ok(())
    }
    pub fn refresh_bf16_weights(&self, weights: Dev<Bf16>, params: Dev<f32>) -> Result<()> {
        assert_eq!(weights.len(), params.len());
        // as Gpt2::refresh_bf16_weights on the CPU
        for (w, &p) in weights.host().iter_mut().zip(params.host().iter()) {
            *w = Bf16::from_f32(round_bf16(p));
        }
        Ok(())
    }
    pub fn global_norm(&self, grads: Dev<f32>) -> Result<f32> {
        Ok(crate::optim::global_norm(grads.host()))
    }
}
