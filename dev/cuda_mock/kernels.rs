//! Stand-in for the whole src/cuda/kernels/ folder, copied there as mod.rs by dev/cuda_mock/run.sh:
//! each wrapper calls its CPU twin on host memory.
use super::context::{Dev, Gpu};
use crate::cpu::{attention::*, encoder::*, gelu::*, layernorm::*, matmul::*, residual::*, softmax_crossentropy::*};
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

#[allow(clippy::too_many_arguments)]
impl Gpu {
    pub fn encoder_forward(&self, out: Dev<f32>, inp: Dev<u32>, wte: Dev<f32>, wpe: Dev<f32>, b: usize, t: usize, c: usize) -> Result<()> {
        encoder_forward(out.host(), inp.host(), wte.host(), wpe.host(), b, t, c);
        Ok(())
    }
    pub fn encoder_backward(&self, dwte: Dev<f32>, dwpe: Dev<f32>, dout: Dev<f32>, inp: Dev<u32>, b: usize, t: usize, c: usize) -> Result<()> {
        encoder_backward(dwte.host(), dwpe.host(), dout.host(), inp.host(), b, t, c);
        Ok(())
    }
    pub fn layernorm_forward(&self, out: Dev<f32>, mean: Dev<f32>, rstd: Dev<f32>, inp: Dev<f32>, weight: Dev<f32>, bias: Dev<f32>, bt: usize, c: usize) -> Result<()> {
        assert!(mean.len() == bt && rstd.len() == bt && weight.len() == c && bias.len() == c);
        layernorm_forward(out.host(), mean.host(), rstd.host(), inp.host(), weight.host(), bias.host(), bt, c);
        Ok(())
    }
    pub fn layernorm_backward(&self, dinp: Dev<f32>, dweight: Dev<f32>, dbias: Dev<f32>, dout: Dev<f32>, inp: Dev<f32>, weight: Dev<f32>, mean: Dev<f32>, rstd: Dev<f32>, bt: usize, c: usize) -> Result<()> {
        assert!(dweight.len() == c && dbias.len() == c && weight.len() == c && mean.len() == bt && rstd.len() == bt && inp.len() == bt * c && dout.len() == bt * c);
        layernorm_backward(dinp.host(), dweight.host(), dbias.host(), dout.host(), inp.host(), weight.host(), mean.host(), rstd.host(), bt, c);
        Ok(())
    }
    pub fn matmul_forward(&self, out: Dev<f32>, inp: Dev<f32>, weight: Dev<f32>, bias: Option<Dev<f32>>, bt: usize, c: usize, oc: usize) -> Result<()> {
        assert!(bias.is_none_or(|b| b.len() == oc));
        matmul_forward(out.host(), inp.host(), weight.host(), bias.map(|b| &*b.host()), bt, c, oc);
        Ok(())
    }
    pub fn matmul_backward(&self, dinp: Dev<f32>, dweight: Dev<f32>, dbias: Option<Dev<f32>>, dout: Dev<f32>, inp: Dev<f32>, weight: Dev<f32>, bt: usize, c: usize, oc: usize) -> Result<()> {
        assert!(inp.len() == bt * c && weight.len() == oc * c);
        matmul_backward(dinp.host(), dweight.host(), dbias.map(|b| b.host()), dout.host(), inp.host(), weight.host(), bt, c, oc);
        Ok(())
    }
    pub fn attention_forward(&self, out: Dev<f32>, lse: Dev<f32>, inp: Dev<f32>, b: usize, t: usize, c: usize, nh: usize) -> Result<()> {
        assert!(lse.len() == b * nh * t && out.len() == b * t * c && inp.len() == b * t * 3 * c);
        attention_forward(out.host(), lse.host(), inp.host(), b, t, c, nh);
        Ok(())
    }
    pub fn attention_backward(&self, dinp: Dev<f32>, delta: Dev<f32>, dout: Dev<f32>, inp: Dev<f32>, out: Dev<f32>, lse: Dev<f32>, b: usize, t: usize, c: usize, nh: usize) -> Result<()> {
        assert!(delta.len() == b * nh * t && lse.len() == b * nh * t && inp.len() == b * t * 3 * c && dout.len() == b * t * c && out.len() == b * t * c);
        attention_backward(dinp.host(), delta.host(), dout.host(), inp.host(), out.host(), lse.host(), b, t, c, nh);
        Ok(())
    }
    pub fn gelu_forward(&self, out: Dev<f32>, inp: Dev<f32>) -> Result<()> {
        gelu_forward(out.host(), inp.host());
        Ok(())
    }
    pub fn gelu_backward(&self, dinp: Dev<f32>, inp: Dev<f32>, dout: Dev<f32>) -> Result<()> {
        gelu_backward(dinp.host(), inp.host(), dout.host());
        Ok(())
    }
    pub fn residual_forward(&self, out: Dev<f32>, inp1: Dev<f32>, inp2: Dev<f32>) -> Result<()> {
        residual_forward(out.host(), inp1.host(), inp2.host());
        Ok(())
    }
    pub fn residual_backward(&self, dinp1: Dev<f32>, dinp2: Dev<f32>, dout: Dev<f32>) -> Result<()> {
        residual_backward(dinp1.host(), dinp2.host(), dout.host());
        Ok(())
    }
    pub fn crossentropy_forward(&self, losses: Dev<f32>, lse: Dev<f32>, logits: Dev<f32>, targets: Dev<u32>, bt: usize, v: usize, vp: usize) -> Result<()> {
        assert!(targets.len() == bt && logits.len() == bt * vp && lse.len() == bt);
        crossentropy_forward(losses.host(), lse.host(), logits.host(), targets.host(), bt, v, vp);
        Ok(())
    }
    pub fn crossentropy_softmax_backward(&self, logits: Dev<f32>, dlosses: Dev<f32>, lse: Dev<f32>, targets: Dev<u32>, bt: usize, v: usize, vp: usize) -> Result<()> {
        assert!(dlosses.len() == bt && targets.len() == bt && lse.len() == bt && logits.len() == bt * vp);
        crossentropy_softmax_backward(logits.host(), dlosses.host(), lse.host(), targets.host(), bt, v, vp);
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
    pub fn global_norm(&self, grads: Dev<f32>) -> Result<f32> {
        Ok(crate::optim::global_norm(grads.host()))
    }
}
