// AdamW (https://arxiv.org/abs/1711.05101). Twin: adamw_update in src/optim.rs.
//
// One update of num_parameters parameters (one tensor: src/cuda/gpt2.rs launches this once per
// parameter tensor, with that tensor's weight decay), every gradient first multiplied by grad_scale
// (gradient clipping: the scale comes from global_norm.cu's norm):
//   m = beta1 m + (1 - beta1) g          (running mean of gradients)
//   v = beta2 v + (1 - beta2) g^2        (running mean of squared gradients)
//   p -= lr (m / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps) + wd p)
// beta1_correction = 1 - beta1^t and beta2_correction = 1 - beta2^t are computed once on the host.
// One thread per parameter.
extern "C" __global__ void adamw_update(float* params, const float* grads, float* m, float* v,
                                        long long num_parameters, float lr, float beta1, float beta2,
                                        float beta1_correction, float beta2_correction, float eps,
                                        float weight_decay, float grad_scale) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= num_parameters) return;
    float g = grads[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float m_hat = mi / beta1_correction;
    float v_hat = vi / beta2_correction;
    float p = params[i];
    params[i] = p - lr * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * p);
}

// bf16 training (src/precision.rs): after the update, the layers' bf16 copy of the weights is
// refreshed from the fp32 master, each weight rounded to nearest even (kernels/bf16.cuh). Launched
// once over all num_parameters after the per-tensor updates, and whenever the master is uploaded.
extern "C" __global__ void refresh_bf16_weights(bf16* weights, const float* params, long long num_parameters) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= num_parameters) return;
    store(&weights[i], params[i]);
}
