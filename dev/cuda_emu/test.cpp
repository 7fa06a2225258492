// Every kernel of kernels/ run in the CPU emulator (cuda_emu.h) against plain C++ restatements of
// the CPU layers in src/cpu/, with the launch settings of src/cuda/kernels/*.rs. See README.md.
//
// Every block size, tile size and grid limit below comes from launch_settings.h, which run.sh
// generates from the `pub const`s of src/cuda/kernels/*.rs: no launch number is written here (run.sh
// refuses a literal block size in this file), so the emulator launches exactly what the Rust does.
#include "cuda_emu.h"
#include "launch_settings.h"
#include <random>
#include <algorithm>
namespace enc { 
#include "encoder.cu"
}
namespace ln {
#include "layernorm.cu"
}
namespace mm {
#include "matmul.cu"
}
namespace att {
#include "attention.cu"
}
namespace ge {
#include "gelu.cu"
}
namespace re {
#include "residual.cu"
}
namespace sm {
#include "softmax_crossentropy.cu"
}
namespace ad {
#include "adamw.cu"
}
namespace gn {
#include "global_norm.cu"
}
// The settings the kernels themselves also spell out must agree with the Rust ones.
static_assert(MATMUL_TILE == BM && MATMUL_TILE == BN, "MATMUL_TILE (src/cuda/kernels/matmul.rs) != BM, BN (kernels/matmul.cu)");
static_assert(MATMUL_TILED_BLOCK == MATMUL_THREADS, "MATMUL_TILED_BLOCK (src/cuda/kernels/matmul.rs) != MATMUL_THREADS (kernels/matmul.cu)");
static_assert(ATTENTION_MAX_HS == MAX_HS, "ATTENTION_MAX_HS (src/cuda/kernels/attention.rs) != MAX_HS (kernels/attention.cu)");
static_assert(ATTENTION_TILE == ATT_TILE && ATTENTION_WARPS == ATT_WARPS, "ATTENTION_TILE, ATTENTION_WARPS (src/cuda/kernels/attention.rs) != ATT_TILE, ATT_WARPS (kernels/attention.cu)");
static_assert(ATTENTION_TILE == WARP_SIZE && ATTENTION_BLOCK == ATTENTION_WARPS * WARP_SIZE, "attention: a tile is one warp's lanes, a block ATTENTION_WARPS warps");
// ... and the kernels' reductions need whole warps, at most 32 of them.
static_assert(LAYERNORM_FORWARD_BLOCK % WARP_SIZE == 0 && LAYERNORM_BACKWARD_BLOCK % WARP_SIZE == 0, "layernorm needs whole warps");
static_assert(SOFTMAX_BLOCK % WARP_SIZE == 0 && SOFTMAX_BLOCK <= 32 * WARP_SIZE, "block_reduce needs 1 to 32 whole warps");
static_assert(GLOBAL_NORM_BLOCK % WARP_SIZE == 0 && GLOBAL_NORM_BLOCK <= 32 * WARP_SIZE, "global_norm_squared needs 1 to 32 whole warps");

typedef std::vector<float> V;
static std::mt19937 rng(42);
V rnd(size_t n, float s) { std::uniform_real_distribution<float> d(-s, s); V v(n); for (auto& x : v) x = d(rng); return v; }
std::vector<unsigned> toks(size_t n, unsigned vocab) { std::vector<unsigned> v(n); for (auto& x : v) x = rng() % vocab; return v; }
int failures = 0;
void check(const char* what, const V& g, const V& c, float tol) {
    float scale = 1; for (float x : c) scale = std::max(scale, 1 + std::fabs(x));
    float worst = 0; size_t at = 0;
    for (size_t i = 0; i < c.size(); i++) { float d = std::fabs(g[i] - c[i]); if (!(d <= worst)) { worst = d; at = i; } }
    bool ok = worst <= tol * scale;
    if (!ok) failures++;
    printf("%-40s n %7zu max diff %9.2e (at %zu: %g vs %g) tol %.1e %s\n", what, c.size(), worst, at, g[at], c[at], tol * scale, ok ? "ok" : "FAIL");
}
dim3 g1(size_t n, unsigned t) { return dim3{(unsigned)((n + t - 1) / t), 1, 1}; }
dim3 b1(unsigned t) { return dim3{t, 1, 1}; }
const int NUM_SMS = 132;  // an H100 SXM: the grids of layernorm_backward and global_norm_squared depend on it

void test_encoder() {
    int B = 3, T = 7, C = 37, Vv = 50, Vp = 53, maxT = 9;
    auto inp = toks(B * T, Vv); V wte = rnd(Vp * C, 1), wpe = rnd(maxT * C, 1), dout = rnd(B * T * C, 1);
    V dwte0 = rnd(Vp * C, 1), dwpe0 = rnd(maxT * C, 1);
    V out(B * T * C), ref(B * T * C);
    for (int bt = 0; bt < B * T; bt++) for (int c = 0; c < C; c++) ref[bt * C + c] = wte[inp[bt] * C + c] + wpe[(bt % T) * C + c];
    emu_launch(enc::encoder_forward, g1(B * T * C, ENCODER_BLOCK), b1(ENCODER_BLOCK), 0, out.data(), inp.data(), wte.data(), wpe.data(), B, T, C);
    check("encoder out", out, ref, 0);
    V dwte = dwte0, dwpe = dwpe0, rwte = dwte0, rwpe = dwpe0;
    for (int bt = 0; bt < B * T; bt++) for (int c = 0; c < C; c++) { rwte[inp[bt] * C + c] += dout[bt * C + c]; rwpe[(bt % T) * C + c] += dout[bt * C + c]; }
    emu_launch(enc::encoder_backward, g1(B * T * C, ENCODER_BLOCK), b1(ENCODER_BLOCK), 0, dwte.data(), dwpe.data(), dout.data(), inp.data(), B, T, C);
    check("encoder dwte", dwte, rwte, 1e-6); check("encoder dwpe", dwpe, rwpe, 1e-6);
}

void test_layernorm(int BT, int C) {
    V inp = rnd(BT * C, 2), w = rnd(C, 1), b = rnd(C, 1), dout = rnd(BT * C, 1), dinp0 = rnd(BT * C, 1), dw0 = rnd(C, 1), db0 = rnd(C, 1);
    V out(BT * C), mean(BT), rstd(BT), rout(BT * C), rmean(BT), rrstd(BT);
    for (int r = 0; r < BT; r++) {
        float m = 0; for (int i = 0; i < C; i++) m += inp[r * C + i]; m /= C;
        float v = 0; for (int i = 0; i < C; i++) v += (inp[r * C + i] - m) * (inp[r * C + i] - m); v /= C;
        float s = 1 / std::sqrt(v + 1e-5f);
        for (int i = 0; i < C; i++) rout[r * C + i] = (inp[r * C + i] - m) * s * w[i] + b[i];
        rmean[r] = m; rrstd[r] = s;
    }
    emu_launch(ln::layernorm_forward, g1((size_t)BT * WARP_SIZE, LAYERNORM_FORWARD_BLOCK), b1(LAYERNORM_FORWARD_BLOCK), 0, out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), BT, C);
    check("layernorm out", out, rout, 1e-5); check("layernorm mean", mean, rmean, 1e-5); check("layernorm rstd", rstd, rrstd, 1e-5);
    V dinp = dinp0, dw = dw0, db = db0, rdinp = dinp0, rdw = dw0, rdb = db0;
    for (int r = 0; r < BT; r++) {
        float m = rmean[r], s = rrstd[r], dm = 0, dnm = 0;
        for (int i = 0; i < C; i++) { float n = (inp[r*C+i]-m)*s, d = w[i]*dout[r*C+i]; dm += d; dnm += d*n; }
        dm /= C; dnm /= C;
        for (int i = 0; i < C; i++) { float n = (inp[r*C+i]-m)*s, d = w[i]*dout[r*C+i]; rdb[i] += dout[r*C+i]; rdw[i] += n*dout[r*C+i]; rdinp[r*C+i] += (d - dm - n*dnm)*s; }
    }
    int warps = LAYERNORM_BACKWARD_BLOCK / WARP_SIZE;
    unsigned blocks = std::max(1, std::min((BT + warps - 1) / warps, (int)LAYERNORM_BACKWARD_BLOCKS_PER_SM * NUM_SMS));
    emu_launch(ln::layernorm_backward, dim3{blocks,1,1}, b1(LAYERNORM_BACKWARD_BLOCK), 2 * C * 4, dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), mean.data(), rstd.data(), BT, C);
    check("layernorm dinp", dinp, rdinp, 1e-5); check("layernorm dweight", dw, rdw, 1e-4); check("layernorm dbias", db, rdb, 1e-4);
}

dim3 tiled(int m, int n) { return dim3{(n + MATMUL_TILE - 1) / MATMUL_TILE, (m + MATMUL_TILE - 1) / MATMUL_TILE, 1}; }
void test_matmul(int version, int BT, int C, int OC) {
    V inp = rnd(BT * C, 1), w = rnd(OC * C, 1), bias = rnd(OC, 1), dout = rnd(BT * OC, 1), dinp0 = rnd(BT * C, 1), dw0 = rnd(OC * C, 1), db0 = rnd(OC, 1);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        V out(BT * OC), ref(BT * OC);
        for (int r = 0; r < BT; r++) for (int o = 0; o < OC; o++) { float v = with_bias ? bias[o] : 0; for (int i = 0; i < C; i++) v += inp[r*C+i]*w[o*C+i]; ref[r*OC+o] = v; }
        const float* bp = with_bias ? bias.data() : nullptr;
        if (version == 1) emu_launch(mm::matmul_forward1, g1((size_t)BT * OC, MATMUL_NAIVE_BLOCK), b1(MATMUL_NAIVE_BLOCK), 0, out.data(), inp.data(), w.data(), bp, BT, C, OC);
        else emu_launch(mm::matmul_forward2, tiled(BT, OC), b1(MATMUL_TILED_BLOCK), 0, out.data(), inp.data(), w.data(), bp, BT, C, OC);
        char name[64]; snprintf(name, 64, "matmul%d out bias=%d (%d,%d,%d)", version, with_bias, BT, C, OC);
        check(name, out, ref, 1e-5);
    }
    V dinp = dinp0, dw = dw0, db = db0, rdinp = dinp0, rdw = dw0, rdb = db0;
    for (int r = 0; r < BT; r++) for (int o = 0; o < OC; o++) { float d = dout[r*OC+o]; rdb[o] += d; for (int i = 0; i < C; i++) { rdinp[r*C+i] += d * w[o*C+i]; rdw[o*C+i] += d * inp[r*C+i]; } }
    if (version == 1) {
        emu_launch(mm::matmul_backward_dinp1, g1((size_t)BT * C, MATMUL_NAIVE_BLOCK), b1(MATMUL_NAIVE_BLOCK), 0, dinp.data(), dout.data(), w.data(), BT, C, OC);
        emu_launch(mm::matmul_backward_dweight1, g1((size_t)OC * C, MATMUL_NAIVE_BLOCK), b1(MATMUL_NAIVE_BLOCK), 0, dw.data(), dout.data(), inp.data(), BT, C, OC);
        emu_launch(mm::matmul_backward_dbias1, g1(OC, MATMUL_NAIVE_BLOCK), b1(MATMUL_NAIVE_BLOCK), 0, db.data(), dout.data(), BT, OC);
    } else {
        emu_launch(mm::matmul_backward_dinp2, tiled(BT, C), b1(MATMUL_TILED_BLOCK), 0, dinp.data(), dout.data(), w.data(), BT, C, OC);
        emu_launch(mm::matmul_backward_dweight2, tiled(OC, C), b1(MATMUL_TILED_BLOCK), 0, dw.data(), dout.data(), inp.data(), BT, C, OC);
        unsigned groups = std::clamp((BT + MATMUL_DBIAS_ROWS_PER_GROUP - 1) / MATMUL_DBIAS_ROWS_PER_GROUP, 1u, MATMUL_DBIAS_MAX_GROUPS);
        dim3 grid{(OC + MATMUL_DBIAS_BLOCK_X - 1) / MATMUL_DBIAS_BLOCK_X, groups, 1};
        emu_launch(mm::matmul_backward_dbias2, grid, dim3{MATMUL_DBIAS_BLOCK_X, MATMUL_DBIAS_BLOCK_Y, 1}, 0, db.data(), dout.data(), BT, OC);
    }
    char name[64];
    snprintf(name, 64, "matmul%d dinp", version); check(name, dinp, rdinp, 1e-4);
    snprintf(name, 64, "matmul%d dweight", version); check(name, dw, rdw, 1e-4);
    snprintf(name, 64, "matmul%d dbias", version); check(name, db, rdb, 1e-4);
    // cuBLAS path's bias add
    V out = rnd(BT * OC, 1), ref = out;
    for (int r = 0; r < BT; r++) for (int o = 0; o < OC; o++) ref[r*OC+o] += bias[o];
    emu_launch(mm::matmul_add_bias, g1((size_t)BT * OC, MATMUL_NAIVE_BLOCK), b1(MATMUL_NAIVE_BLOCK), 0, out.data(), bias.data(), BT, OC);
    check("matmul_add_bias", out, ref, 0);
}

// Attention against the plain (T, T) formulation of src/cpu/attention.rs's math: each row's scores,
// their softmax, the weighted sum; the backward through the stored weights. The kernels never hold
// a (T, T) matrix, so this checks the online softmax and the recomputation against the direct way.
void test_attention(int B, int T, int C, int NH) {
    int hs = C / NH; float scale = 1 / std::sqrt((float)hs);
    V inp = rnd(B*T*3*C, 1), dout = rnd(B*T*C, 1), dinp0 = rnd(B*T*3*C, 1);
    size_t na = (size_t)B*NH*T*T, nl = (size_t)B*NH*T;
    V rout(B*T*C), rlse(nl), ratt(na);
    for (int b = 0; b < B; b++) for (int h = 0; h < NH; h++) for (int t1 = 0; t1 < T; t1++) {
        float* a = &ratt[((b*NH+h)*T+t1)*T];
        const float* q = &inp[(b*T+t1)*3*C + h*hs];
        float mx = -INFINITY;
        for (int t2 = 0; t2 <= t1; t2++) { const float* k = &inp[(b*T+t2)*3*C + C + h*hs]; float d = 0; for (int i = 0; i < hs; i++) d += q[i]*k[i]; a[t2] = d*scale; mx = std::max(mx, a[t2]); }
        float s = 0; for (int t2 = 0; t2 <= t1; t2++) { a[t2] = std::exp(a[t2]-mx); s += a[t2]; }
        for (int t2 = 0; t2 <= t1; t2++) a[t2] /= s;
        rlse[(b*NH+h)*T+t1] = mx + std::log(s);
        float* o = &rout[(b*T+t1)*C + h*hs];
        for (int i = 0; i < hs; i++) { float acc = 0; for (int t2 = 0; t2 <= t1; t2++) acc += a[t2]*inp[(b*T+t2)*3*C + 2*C + h*hs + i]; o[i] = acc; }
    }
    dim3 rows{(unsigned)((T + ATTENTION_WARPS - 1) / ATTENTION_WARPS), (unsigned)(B*NH), 1};
    V out(B*T*C, 7.f), lse(nl, 7.f);
    emu_launch(att::attention_forward, rows, b1(ATTENTION_BLOCK), 0, out.data(), lse.data(), inp.data(), B, T, C, NH);
    char name[96];
    snprintf(name, sizeof name, "attention out (B%d T%d hs%d)", B, T, hs); check(name, out, rout, 1e-5);
    snprintf(name, sizeof name, "attention lse (B%d T%d hs%d)", B, T, hs); check(name, lse, rlse, 1e-5);
    V rdinp = dinp0, rdelta(nl);
    std::vector<float> datt(T);
    for (int b = 0; b < B; b++) for (int h = 0; h < NH; h++) for (int t1 = 0; t1 < T; t1++) {
        size_t row = ((size_t)(b*NH+h)*T+t1)*T; const float* d = &dout[(b*T+t1)*C+h*hs];
        for (int t2 = 0; t2 <= t1; t2++) { size_t vo = (b*T+t2)*3*C + 2*C + h*hs; float x = 0; for (int i = 0; i < hs; i++) { x += inp[vo+i]*d[i]; rdinp[vo+i] += ratt[row+t2]*d[i]; } datt[t2] = x; }
        float dot = 0; for (int t2 = 0; t2 <= t1; t2++) dot += ratt[row+t2]*datt[t2];
        rdelta[(b*NH+h)*T+t1] = dot;  // = dout . out
        size_t qo = (b*T+t1)*3*C + h*hs;
        for (int t2 = 0; t2 <= t1; t2++) { size_t ko = (b*T+t2)*3*C + C + h*hs; float x = ratt[row+t2]*(datt[t2]-dot)*scale; for (int i = 0; i < hs; i++) { rdinp[qo+i] += inp[ko+i]*x; rdinp[ko+i] += inp[qo+i]*x; } }
    }
    V dinp = dinp0, delta(nl, 3.f);
    dim3 per_row = g1(nl, ATTENTION_WARPS);  // one warp per row: nl warps of ATTENTION_WARPS a block
    emu_launch(att::attention_backward_delta, per_row, b1(ATTENTION_BLOCK), 0, delta.data(), dout.data(), rout.data(), B, T, C, NH);
    emu_launch(att::attention_backward_dkv, rows, b1(ATTENTION_BLOCK), 0, dinp.data(), delta.data(), dout.data(), inp.data(), rlse.data(), B, T, C, NH);
    emu_launch(att::attention_backward_dq, rows, b1(ATTENTION_BLOCK), 0, dinp.data(), delta.data(), dout.data(), inp.data(), rlse.data(), B, T, C, NH);
    snprintf(name, sizeof name, "attention delta (B%d T%d hs%d)", B, T, hs); check(name, delta, rdelta, 1e-5);
    snprintf(name, sizeof name, "attention dinp (B%d T%d hs%d)", B, T, hs); check(name, dinp, rdinp, 1e-5);
}

void test_elementwise() {
    long long N = 1007; V x = rnd(N, 4), y = rnd(N, 1), d = rnd(N, 1), d1 = rnd(N, 1), d2 = rnd(N, 1);
    V out(N), ref(N);
    for (int i = 0; i < N; i++) { float c = 0.044715f*x[i]*x[i]*x[i]; ref[i] = 0.5f*x[i]*(1+std::tanh(0.7978846f*(x[i]+c))); }
    emu_launch(ge::gelu_forward, g1(N, GELU_BLOCK), b1(GELU_BLOCK), 0, out.data(), x.data(), N); check("gelu out", out, ref, 1e-6);
    V dinp = d1, rd = d1;
    for (int i = 0; i < N; i++) { float u = 0.7978846f*(x[i]+0.044715f*x[i]*x[i]*x[i]); float th = std::tanh(u); float s = 1-th*th; rd[i] += (0.5f*(1+th) + 0.5f*x[i]*s*0.7978846f*(1+3*0.044715f*x[i]*x[i]))*d[i]; }
    emu_launch(ge::gelu_backward, g1(N, GELU_BLOCK), b1(GELU_BLOCK), 0, dinp.data(), x.data(), d.data(), N); check("gelu dinp", dinp, rd, 1e-6);
    for (int i = 0; i < N; i++) ref[i] = x[i] + y[i];
    emu_launch(re::residual_forward, g1(N, RESIDUAL_BLOCK), b1(RESIDUAL_BLOCK), 0, out.data(), x.data(), y.data(), N); check("residual out", out, ref, 0);
    V a = d1, b = d2, ra = d1, rb = d2; for (int i = 0; i < N; i++) { ra[i] += d[i]; rb[i] += d[i]; }
    emu_launch(re::residual_backward, g1(N, RESIDUAL_BLOCK), b1(RESIDUAL_BLOCK), 0, a.data(), b.data(), d.data(), N); check("residual d1", a, ra, 0); check("residual d2", b, rb, 0);
}

void test_softmax(int BT, int Vv, int Vp) {
    V logits = rnd(BT*Vp, 5), dl = rnd(BT, 1); auto tg = toks(BT, Vv);
    V rp(BT*Vp), rl(BT), rlse(BT);
    for (int r = 0; r < BT; r++) { float mx = -INFINITY; for (int i = 0; i < Vv; i++) mx = std::max(mx, logits[r*Vp+i]); float s = 0; for (int i = 0; i < Vv; i++) { rp[r*Vp+i] = std::exp(logits[r*Vp+i]-mx); s += rp[r*Vp+i]; } for (int i = 0; i < Vv; i++) rp[r*Vp+i] /= s; rl[r] = -std::log(rp[r*Vp+tg[r]]); rlse[r] = mx + std::log(s); }
    V l(BT, 3.f), lse(BT, 3.f);
    emu_launch(sm::crossentropy_forward, dim3{(unsigned)BT,1,1}, b1(SOFTMAX_BLOCK), 0, l.data(), lse.data(), logits.data(), tg.data(), BT, Vv, Vp);
    check("crossentropy losses", l, rl, 1e-5); check("crossentropy lse", lse, rlse, 1e-5);
    // the gradient from the stored probabilities, against the kernel's, written over the logits
    V rdl(BT*Vp, 0.f);
    for (int r = 0; r < BT; r++) for (int j = 0; j < Vv; j++) rdl[r*Vp+j] = (rp[r*Vp+j] - (j == (int)tg[r] ? 1.f : 0.f)) * dl[r];
    V dlog = logits;
    emu_launch(sm::crossentropy_softmax_backward, dim3{(unsigned)BT,1,1}, b1(SOFTMAX_BLOCK), 0, dlog.data(), dl.data(), rlse.data(), tg.data(), BT, Vv, Vp); check("crossentropy dlogits (over the logits)", dlog, rdl, 1e-5);
}

void test_optim() {
    long long N = 100003; V p = rnd(N, 1), g = rnd(N, 2), m = rnd(N, 0.1), v = rnd(N, 0.1); for (auto& x : v) x = std::fabs(x);
    double ss = 0; for (float x : g) ss += (double)x*x;
    double out = 0; unsigned blocks = std::clamp((unsigned)((N + GLOBAL_NORM_BLOCK - 1) / GLOBAL_NORM_BLOCK), 1u, GLOBAL_NORM_BLOCKS_PER_SM * NUM_SMS);
    emu_launch(gn::global_norm_squared, dim3{blocks,1,1}, b1(GLOBAL_NORM_BLOCK), 0, &out, g.data(), N);
    printf("global norm %g vs %g %s\n", std::sqrt(out), std::sqrt(ss), std::fabs(std::sqrt(out)-std::sqrt(ss)) <= 1e-6*std::sqrt(ss) ? "ok" : "FAIL");
    if (!(std::fabs(std::sqrt(out)-std::sqrt(ss)) <= 1e-6*std::sqrt(ss))) failures++;
    float lr = 1e-2, b1_ = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f; int t = 3;
    float c1 = 1 - std::pow(b1_, t), c2 = 1 - std::pow(b2, t);
    V rp = p, rm = m, rv = v;
    for (long long i = 0; i < N; i++) { float gg = g[i]*gs; rm[i] = b1_*rm[i] + (1-b1_)*gg; rv[i] = b2*rv[i] + (1-b2)*gg*gg; float mh = rm[i]/c1, vh = rv[i]/c2; rp[i] -= lr*(mh/(std::sqrt(vh)+eps) + wd*rp[i]); }
    emu_launch(ad::adamw_update, g1(N, ADAMW_BLOCK), b1(ADAMW_BLOCK), 0, p.data(), g.data(), m.data(), v.data(), N, lr, b1_, b2, c1, c2, eps, wd, gs);
    check("adamw params", p, rp, 1e-6); check("adamw m", m, rm, 1e-6); check("adamw v", v, rv, 1e-6);
}

int main(int argc, char** argv) {
    if (argc > 1) {
        test_matmul(2, 257, 768, 2304);
        test_matmul(2, 129, 3071, 131);
        test_attention(2, 64, 128, 2);
        test_layernorm(1000, 768);
        test_softmax(3, 50257, 50304);
        printf("%s (%d failures)\n", failures ? "FAILED" : "ALL OK", failures);
        return failures != 0;
    }
    test_encoder();
    test_layernorm(67, 95);
    test_layernorm(5003, 41);
    test_matmul(1, 131, 77, 259);
    test_matmul(2, 131, 77, 259);
    test_matmul(2, 5, 3, 7);
    test_matmul(2, 300, 200, 130);
    // T below, at and past the 32-wide tile and not a multiple of it or of the 8 rows a block; head
    // sizes 8, 5 (not a multiple of anything), 64 (GPT-2) and 128 (the largest)
    test_attention(2, 13, 24, 3);
    test_attention(1, 5, 15, 3);
    test_attention(1, 32, 64, 1);
    test_attention(1, 71, 64, 1);
    test_attention(1, 45, 256, 2);
    test_elementwise();
    test_softmax(5, 1000, 1031);
    test_optim();
    printf("%s (%d failures)\n", failures ? "FAILED" : "ALL OK", failures);
    return failures != 0;
}
