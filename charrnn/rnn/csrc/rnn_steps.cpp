// The recurrences of backend `loop_native`: LSTM and GRU forward and hand-written backward through
// time as C++ loops. A step is one matmul and one fused gate kernel (below) that reads and writes every
// element once; nothing runs in Python between steps. Layouts as nn.LSTM / nn.GRU: gate blocks
// stacked along the last dimension, (i, f, g, o) for the LSTM and (r, z, n) for the GRU.
// Built and loaded by charrnn/native_rnn.py, whose docstring gives the math.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

namespace {

constexpr int64_t kRowsPerTask = 8;  // batch rows per parallel task of a gate kernel: B=32 → 4 tasks

template <typename acc_t>
inline acc_t sigmoid(acc_t x) { return acc_t(1) / (acc_t(1) + std::exp(-x)); }

// Run `row(b)` for every batch row b in [0, B), in parallel over rows.
template <typename F>
void for_rows(int64_t B, const F& row) {
  at::parallel_for(0, B, kRowsPerTask, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) row(b);
  });
}

template <typename s_t>
inline const s_t* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<s_t>() : nullptr; }

// Row t of a contiguous (T, ...) tensor as a pointer: no Tensor (no dispatcher call) per step.
template <typename s_t>
struct Steps {
  s_t* base;
  int64_t stride;
  explicit Steps(const at::Tensor& t) : base(t.data_ptr<s_t>()), stride(t.stride(0)) {
    TORCH_CHECK(t.is_contiguous(), "charrnn_native: a step buffer must be contiguous");
  }
  s_t* operator[](int64_t t) const { return base + t * stride; }
};

// y = x w^T for the T matmuls a recurrence makes with one weight w (N, K), w packed once per call for
// oneDNN (`mkldnn::_reorder_linear_weight` and `_linear_pointwise`, the ops inductor emits for a CPU
// linear; charrnn/rnn/onednn.py holds the Python side and the torch version they are checked against).
// At B=32, H=256 on 2 threads oneDNN's packed matmul took 41 us for h W_hh^T (B, 3H) and 45 us for
// d W_hh (B, H) where at::mm and MKL's packed GEMM took 80 us (AMD EPYC, AVX-512). fp32 only; at::mm
// otherwise (bf16, fp64, a torch without oneDNN).
class StepMatmul {
 public:
  StepMatmul(const at::Tensor& w, int64_t rows) : w_(w) {
    if (w.scalar_type() != at::kFloat || !at::hasMKLDNN()) return;
    auto& dispatcher = c10::Dispatcher::singleton();
    auto linear = dispatcher.findSchema({"mkldnn::_linear_pointwise", ""});
    auto reorder = dispatcher.findSchema({"mkldnn::_reorder_linear_weight", ""});
    if (!linear || !reorder) return;
    packed_ = reorder->typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>().call(w.contiguous(), rows);
    linear_ = linear;
  }
  at::Tensor operator()(const at::Tensor& x) const {
    if (!linear_) return at::mm(x, w_.t());
    return linear_->typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                      c10::string_view, c10::List<std::optional<at::Scalar>>,
                                      std::optional<c10::string_view>)>()
        .call(x, packed_, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);
  }

 private:
  at::Tensor w_, packed_;
  std::optional<c10::OperatorHandle> linear_;
};

// ------------------------------------------------------------------------------------------ LSTM

// xp (B, 4H) = W_ih x + b_ih + b_hh; m (B, 4H) = h W_hh^T; c_prev (B, H)
// → a (B, 4H) = i, f, tanh g, o; c (B, H), tanh c (B, H), h (B, H).
template <typename s_t>
void lstm_cell_fwd(const s_t* xp, const s_t* m, const s_t* c_prev, s_t* a, s_t* c, s_t* tanh_c, s_t* h,
                   int64_t B, int64_t H) {
  using acc_t = at::opmath_type<s_t>;
  for_rows(B, [&](int64_t b) {
    const s_t* xi = xp + b * 4 * H; const s_t* xf = xi + H; const s_t* xg = xf + H; const s_t* xo = xg + H;
    s_t* ai = a + b * 4 * H; s_t* af = ai + H; s_t* ag = af + H; s_t* ao = ag + H;
    const s_t* mi = m + b * 4 * H; const s_t* mf = mi + H; const s_t* mg = mf + H; const s_t* mo = mg + H;
    const s_t* cp = c_prev + b * H; s_t* cb = c + b * H; s_t* tb = tanh_c + b * H; s_t* hb = h + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      acc_t i = sigmoid<acc_t>(acc_t(xi[j]) + acc_t(mi[j])), f = sigmoid<acc_t>(acc_t(xf[j]) + acc_t(mf[j]));
      acc_t g = std::tanh(acc_t(xg[j]) + acc_t(mg[j])), o = sigmoid<acc_t>(acc_t(xo[j]) + acc_t(mo[j]));
      acc_t cj = f * acc_t(cp[j]) + i * g;
      acc_t tc = std::tanh(cj);
      ai[j] = i; af[j] = f; ag[j] = g; ao[j] = o;
      cb[j] = cj; tb[j] = tc; hb[j] = o * tc;
    }
  });
}

// The gradient at h_t is m + g_out (m (B, H) = d_{t+1} W_hh, null at t = T-1; g_out: the output
// gradient of h_t); gc (B, H): gradient reaching c_t from later steps, replaced by the one reaching
// c_{t-1}; act (B, 4H) = i, f, tanh g, o; c_prev = c_{t-1}, tanh_c = tanh c_t (B, H)
// → d (B, 4H): gradient of the step's pre-activations.
template <typename s_t>
void lstm_cell_bwd(const s_t* m, const s_t* g_out, s_t* gc, const s_t* act, const s_t* c_prev, const s_t* tanh_c,
                   s_t* d, int64_t B, int64_t H) {
  using acc_t = at::opmath_type<s_t>;
  for_rows(B, [&](int64_t b) {
    const s_t* ai = act + b * 4 * H; const s_t* af = ai + H; const s_t* ag = af + H; const s_t* ao = ag + H;
    s_t* di = d + b * 4 * H; s_t* df = di + H; s_t* dg = df + H; s_t* d_o = dg + H;
    const s_t* mb = m ? m + b * H : nullptr; const s_t* gb = g_out + b * H;
    s_t* gcb = gc + b * H; const s_t* cp = c_prev + b * H; const s_t* tb = tanh_c + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      acc_t i = ai[j], f = af[j], g = ag[j], o = ao[j], tc = tb[j];
      acc_t dh = acc_t(gb[j]) + (mb ? acc_t(mb[j]) : acc_t(0));
      acc_t dc = acc_t(gcb[j]) + dh * o * (acc_t(1) - tc * tc);
      di[j] = dc * g * i * (acc_t(1) - i);
      df[j] = dc * acc_t(cp[j]) * f * (acc_t(1) - f);
      dg[j] = dc * i * (acc_t(1) - g * g);
      d_o[j] = dh * tc * o * (acc_t(1) - o);
      gcb[j] = dc * f;
    }
  });
}

// xp (T, B, 4H) = x W_ih^T + b_ih + b_hh; w_hh (4H, H); h0, c0 (B, H)
// → hs (T+1, B, H), cs (T+1, B, H), act (T, B, 4H) = i, f, tanh g, o, tanh_c (T, B, H).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    const at::Tensor& xp_in, const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0) {
  const at::Tensor xp = xp_in.contiguous();
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 4;
  at::Tensor act = at::empty_like(xp);
  at::Tensor hs = at::empty({T + 1, B, H}, xp.options()), cs = at::empty({T + 1, B, H}, xp.options());
  at::Tensor tanh_c = at::empty({T, B, H}, xp.options());
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  const StepMatmul recurrent(w_hh, B);                                // h (B, H) → h W_hh^T (B, 4H)
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, xp.scalar_type(), "lstm_forward", [&] {
    const Steps<scalar_t> x_t(xp), a(act), c(cs), tc(tanh_c), h(hs);
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor m = recurrent(hs[t]);
      lstm_cell_fwd<scalar_t>(x_t[t], m.data_ptr<scalar_t>(), c[t], a[t], c[t + 1], tc[t], h[t + 1], B, H);
    }
  });
  return {hs, cs, act, tanh_c};
}

// g_out (T, B, H): gradient of every h_t; g_c (B, H): of c_T; w_hh; what lstm_forward returned
// → d_xp (T, B, 4H), d_w_hh (4H, H), d_h0, d_c0 (B, H).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_backward(
    const at::Tensor& g_out_in, const at::Tensor& g_c, const at::Tensor& w_hh, const at::Tensor& hs,
    const at::Tensor& cs, const at::Tensor& act, const at::Tensor& tanh_c) {
  const int64_t T = act.size(0), B = act.size(1), H = act.size(2) / 4;
  at::Tensor g_out = g_out_in.contiguous();
  at::Tensor d = at::empty_like(act);
  at::Tensor dc = g_c.clone(at::MemoryFormat::Contiguous);
  const StepMatmul recurrent(w_hh.t(), B);                            // d (B, 4H) → d W_hh (B, H)
  at::Tensor m;                                                       // d_{t+1} W_hh: none after the last step
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, act.scalar_type(), "lstm_backward", [&] {
    const Steps<scalar_t> g(g_out), a(act), c(cs), tc(tanh_c), d_pre(d);
    for (int64_t t = T - 1; t >= 0; --t) {
      lstm_cell_bwd<scalar_t>(ptr_or_null<scalar_t>(m), g[t], dc.data_ptr<scalar_t>(), a[t], c[t], tc[t], d_pre[t],
                              B, H);
      m = recurrent(d[t]);
    }
  });
  at::Tensor d_w = at::mm(d.flatten(0, 1).t(), hs.narrow(0, 0, T).flatten(0, 1));  // (4H, T*B) x (T*B, H)
  return {d, d_w, m, dc};
}

// ------------------------------------------------------------------------------------------- GRU

// xp (B, 3H) = W_ih x + b_ih; m (B, 3H) = h W_hh^T; b_hh (3H); h_prev (B, H)
// → h (B, H), act (B, 4H) = r, z, n, (W_hh h + b_hh)_n.
template <typename s_t>
void gru_cell_fwd(const s_t* xp, const s_t* m, const s_t* b_hh, const s_t* h_prev, s_t* h, s_t* act,
                  int64_t B, int64_t H) {
  using acc_t = at::opmath_type<s_t>;
  const s_t* br = b_hh; const s_t* bz = br + H; const s_t* bn = bz + H;
  for_rows(B, [&](int64_t b) {
    const s_t* xr = xp + b * 3 * H; const s_t* xz = xr + H; const s_t* xn = xz + H;
    const s_t* mr = m + b * 3 * H; const s_t* mz = mr + H; const s_t* mn = mz + H;
    s_t* ar = act + b * 4 * H; s_t* az = ar + H; s_t* an = az + H; s_t* ahn = an + H;
    const s_t* hpb = h_prev + b * H; s_t* hb = h + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      acc_t r = sigmoid<acc_t>(acc_t(xr[j]) + acc_t(mr[j]) + acc_t(br[j]));
      acc_t z = sigmoid<acc_t>(acc_t(xz[j]) + acc_t(mz[j]) + acc_t(bz[j]));
      acc_t hn = acc_t(mn[j]) + acc_t(bn[j]);
      acc_t n = std::tanh(acc_t(xn[j]) + r * hn);
      ar[j] = r; az[j] = z; an[j] = n; ahn[j] = hn;
      hb[j] = n + z * (acc_t(hpb[j]) - n);                          // (1 - z) n + z h
    }
  });
}

// The gradient at h_t is m + g_out + carry (m (B, H) = d hp_{t+1} W_hh and carry = z_{t+1} dh_{t+1},
// both null at t = T-1; g_out: the output gradient of h_t); act (B, 4H) as gru_cell_fwd wrote it;
// h_prev (B, H) → d_xp, d_hp (B, 3H): gradients of W_ih x + b_ih and of W_hh h + b_hh; carry (B, H)
// replaced by z_t dh_t.
template <typename s_t>
void gru_cell_bwd(const s_t* m, const s_t* g_out, s_t* carry, bool first, const s_t* act, const s_t* h_prev,
                  s_t* d_xp, s_t* d_hp, int64_t B, int64_t H) {
  using acc_t = at::opmath_type<s_t>;
  for_rows(B, [&](int64_t b) {
    const s_t* ar = act + b * 4 * H; const s_t* az = ar + H; const s_t* an = az + H; const s_t* ahn = an + H;
    s_t* dxr = d_xp + b * 3 * H; s_t* dxz = dxr + H; s_t* dxn = dxz + H;
    s_t* dhr = d_hp + b * 3 * H; s_t* dhz = dhr + H; s_t* dhn = dhz + H;
    const s_t* mb = m ? m + b * H : nullptr; const s_t* gb = g_out + b * H;
    s_t* cb = carry + b * H; const s_t* hpb = h_prev + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      acc_t r = ar[j], z = az[j], n = an[j], hn = ahn[j];
      acc_t dh = acc_t(gb[j]) + (first ? acc_t(0) : acc_t(mb[j]) + acc_t(cb[j]));
      acc_t dn = dh * (acc_t(1) - z) * (acc_t(1) - n * n);
      acc_t dz = dh * (acc_t(hpb[j]) - n) * z * (acc_t(1) - z);
      acc_t dr = dn * hn * r * (acc_t(1) - r);
      dxr[j] = dr; dxz[j] = dz; dxn[j] = dn;
      dhr[j] = dr; dhz[j] = dz; dhn[j] = dn * r;
      cb[j] = dh * z;
    }
  });
}

// xp (T, B, 3H) = x W_ih^T + b_ih; w_hh (3H, H); b_hh (3H); h0 (B, H)
// → hs (T+1, B, H), act (T, B, 4H) = r, z, n, (W_hh h + b_hh)_n.
std::tuple<at::Tensor, at::Tensor> gru_forward(const at::Tensor& xp_in, const at::Tensor& w_hh,
                                               const at::Tensor& b_hh_in, const at::Tensor& h0) {
  const at::Tensor xp = xp_in.contiguous();
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 3;
  at::Tensor hs = at::empty({T + 1, B, H}, xp.options()), act = at::empty({T, B, 4 * H}, xp.options());
  at::Tensor b_hh = b_hh_in.contiguous();
  hs[0].copy_(h0);
  const StepMatmul recurrent(w_hh, B);                                // h (B, H) → h W_hh^T (B, 3H)
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, xp.scalar_type(), "gru_forward", [&] {
    const Steps<scalar_t> x_t(xp), h(hs), a(act);
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor m = recurrent(hs[t]);
      gru_cell_fwd<scalar_t>(x_t[t], m.data_ptr<scalar_t>(), b_hh.data_ptr<scalar_t>(), h[t], h[t + 1], a[t], B, H);
    }
  });
  return {hs, act};
}

// g_out (T, B, H): gradient of every h_t; w_hh; what gru_forward returned
// → d_xp (T, B, 3H), d_w_hh (3H, H), d_b_hh (3H), d_h0 (B, H).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_backward(
    const at::Tensor& g_out_in, const at::Tensor& w_hh, const at::Tensor& hs, const at::Tensor& act) {
  const int64_t T = act.size(0), B = act.size(1), H = act.size(2) / 4;
  at::Tensor g_out = g_out_in.contiguous();
  at::Tensor d_xp = at::empty({T, B, 3 * H}, act.options()), d_hp = at::empty({T, B, 3 * H}, act.options());
  at::Tensor carry = at::empty({B, H}, act.options());
  const StepMatmul recurrent(w_hh.t(), B);                            // d hp (B, 3H) → d hp W_hh (B, H)
  at::Tensor m;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, act.scalar_type(), "gru_backward", [&] {
    const Steps<scalar_t> g(g_out), a(act), h(hs), dx(d_xp), dhp(d_hp);
    for (int64_t t = T - 1; t >= 0; --t) {
      gru_cell_bwd<scalar_t>(ptr_or_null<scalar_t>(m), g[t], carry.data_ptr<scalar_t>(), t == T - 1, a[t], h[t],
                             dx[t], dhp[t], B, H);
      m = recurrent(d_hp[t]);
    }
  });
  at::Tensor flat = d_hp.flatten(0, 1);                               // (T*B, 3H)
  at::Tensor d_w = at::mm(flat.t(), hs.narrow(0, 0, T).flatten(0, 1));  // (3H, T*B) x (T*B, H)
  return {d_xp, d_w, flat.sum(0), m + carry};
}

}  // namespace

TORCH_LIBRARY(charrnn_native, m) {
  m.def("lstm_forward(Tensor xp, Tensor w_hh, Tensor h0, Tensor c0) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("lstm_backward(Tensor g_out, Tensor g_c, Tensor w_hh, Tensor hs, Tensor cs, Tensor act, Tensor tanh_c)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_forward(Tensor xp, Tensor w_hh, Tensor b_hh, Tensor h0) -> (Tensor, Tensor)");
  m.def("gru_backward(Tensor g_out, Tensor w_hh, Tensor hs, Tensor act) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(charrnn_native, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}
