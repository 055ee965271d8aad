// The recurrences of backend `min_native`: minGRU and minLSTM forward and hand-written backward through
// time as C++ loops. The input projections xp = x W_ih^T + b_ih come in computed for every step (one GEMM,
// outside); what is left is one elementwise update per step, with no matmul. Batch rows are independent,
// so each parallel task takes whole rows and runs their time loop alone (no synchronisation between
// steps); inside a row a step is one vectorised loop over H. Layouts batch first, gate blocks stacked
// along the last dimension: (z, h~) for minGRU, (f, i, h~) for minLSTM, as mincells.py.
// Built and loaded with rnn_steps.cpp by charrnn/rnn/native_rnn.py; charrnn/rnn/native_min.py gives the math.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace {

constexpr int64_t kElementsPerTask = 16384;  // row elements (T * H) a parallel task gets at least

// σ(x) from a = exp(-|x|) <= 1: no overflow to inf at either end (x = ±100 saturates to 0 / 1 exactly).
template <typename s_t>
inline s_t sigmoid(s_t x) {
  const s_t a = std::exp(-std::abs(x));
  return (x >= s_t(0) ? s_t(1) : a) / (s_t(1) + a);
}

// softplus(-x) = -log σ(x) = max(-x, 0) + log(1 + exp(-|x|)), without overflow.
template <typename s_t>
inline s_t neg_log_sigmoid(s_t x) { return std::max(-x, s_t(0)) + std::log(s_t(1) + std::exp(-std::abs(x))); }

// g(u) = u + 1/2 for u >= 0, σ(u) below; its derivative 1, σ(u)(1 - σ(u)).
template <typename s_t>
inline s_t g_act(s_t u) { return u >= s_t(0) ? u + s_t(0.5) : sigmoid(u); }

template <typename s_t>
inline s_t g_grad(s_t u) {
  const s_t s = sigmoid(u);
  return u >= s_t(0) ? s_t(1) : s * (s_t(1) - s);
}

// Run `row(b)` for every batch row b in [0, B), in parallel over rows of `row_elements` each.
template <typename F>
void for_rows(int64_t B, int64_t row_elements, const F& row) {
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, row_elements));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) row(b);
  });
}

void check_inputs(const at::Tensor& xp, const at::Tensor& h0, int64_t gates) {
  TORCH_CHECK(xp.dim() == 3 && xp.size(2) % gates == 0, "charrnn min: xp must be (B, T, ", gates, "H)");
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == xp.size(0) && h0.size(1) == xp.size(2) / gates,
              "charrnn min: h0 must be (B, H)");
  TORCH_CHECK(xp.scalar_type() == h0.scalar_type(), "charrnn min: xp and h0 must share a dtype");
}

// ------------------------------------------------------------------------------------------ minGRU
// h_t = (1 - z) h_{t-1} + z g(h~),  z = σ(xp_z)
// d xp_z = dh (g - h_{t-1}) z (1 - z),  d xp_h = dh z g'(xp_h),  dh_{t-1} = dh (1 - z) + g_out_{t-1}

template <typename s_t>
void mingru_row_fwd(const s_t* xp, const s_t* h0, s_t* hs, int64_t T, int64_t H) {
  for (int64_t t = 0; t < T; ++t) {
    const s_t* k = xp + t * 2 * H; const s_t* pre = k + H;
    const s_t* prev = t ? hs + (t - 1) * H : h0;
    s_t* h = hs + t * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const s_t z = sigmoid(k[j]);
      h[j] = prev[j] + z * (g_act(pre[j]) - prev[j]);
    }
  }
}

// carry (H): the gradient reaching h_{t} from later steps; ends as the gradient of h0.
template <typename s_t>
void mingru_row_bwd(const s_t* g_out, const s_t* xp, const s_t* h0, const s_t* hs, s_t* d_xp, s_t* carry,
                    int64_t T, int64_t H) {
  for (int64_t t = T - 1; t >= 0; --t) {
    const s_t* k = xp + t * 2 * H; const s_t* pre = k + H;
    const s_t* prev = t ? hs + (t - 1) * H : h0;
    const s_t* g = g_out + t * H;
    s_t* dk = d_xp + t * 2 * H; s_t* dpre = dk + H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const s_t z = sigmoid(k[j]);
      const s_t dh = g[j] + carry[j];
      dk[j] = dh * (g_act(pre[j]) - prev[j]) * z * (s_t(1) - z);
      dpre[j] = dh * z * g_grad(pre[j]);
      carry[j] = dh * (s_t(1) - z);
    }
  }
}

// ----------------------------------------------------------------------------------------- minLSTM
// f = σ(xp_f), i = σ(xp_i):  h_t = f' h_{t-1} + i' g(h~),  f' = f / (f + i) = σ(-d),  i' = 1 - f' = σ(d),
// d = log i - log f = softplus(-xp_f) - softplus(-xp_i)  (the scan's stable form: f and i may both
// underflow to 0, their ratio stays defined).  With w = dh (h_{t-1} - g) f' i':
// d xp_f = w (1 - f),  d xp_i = -w (1 - i),  d xp_h = dh i' g'(xp_h),  dh_{t-1} = dh f' + g_out_{t-1}

template <typename s_t>
inline s_t minlstm_log_ratio(s_t kf, s_t ki) { return neg_log_sigmoid(kf) - neg_log_sigmoid(ki); }

template <typename s_t>
void minlstm_row_fwd(const s_t* xp, const s_t* h0, s_t* hs, int64_t T, int64_t H) {
  for (int64_t t = 0; t < T; ++t) {
    const s_t* kf = xp + t * 3 * H; const s_t* ki = kf + H; const s_t* pre = ki + H;
    const s_t* prev = t ? hs + (t - 1) * H : h0;
    s_t* h = hs + t * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const s_t f_ = sigmoid(-minlstm_log_ratio(kf[j], ki[j])), g = g_act(pre[j]);
      h[j] = g + f_ * (prev[j] - g);
    }
  }
}

template <typename s_t>
void minlstm_row_bwd(const s_t* g_out, const s_t* xp, const s_t* h0, const s_t* hs, s_t* d_xp, s_t* carry,
                     int64_t T, int64_t H) {
  for (int64_t t = T - 1; t >= 0; --t) {
    const s_t* kf = xp + t * 3 * H; const s_t* ki = kf + H; const s_t* pre = ki + H;
    const s_t* prev = t ? hs + (t - 1) * H : h0;
    const s_t* g = g_out + t * H;
    s_t* df = d_xp + t * 3 * H; s_t* di = df + H; s_t* dpre = di + H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const s_t d = minlstm_log_ratio(kf[j], ki[j]);
      const s_t f_ = sigmoid(-d), i_ = sigmoid(d);
      const s_t dh = g[j] + carry[j];
      const s_t w = dh * (prev[j] - g_act(pre[j])) * f_ * i_;
      df[j] = w * sigmoid(-kf[j]);
      di[j] = -w * sigmoid(-ki[j]);
      dpre[j] = dh * i_ * g_grad(pre[j]);
      carry[j] = dh * f_;
    }
  }
}

// ------------------------------------------------------------------------------------------ drivers

// xp (B, T, G*H), h0 (B, H) → hs (B, T, H): h_1 .. h_T.
template <int64_t G>
at::Tensor min_forward(const at::Tensor& xp_in, const at::Tensor& h0_in) {
  check_inputs(xp_in, h0_in, G);
  const at::Tensor xp = xp_in.contiguous(), h0 = h0_in.contiguous();
  const int64_t B = xp.size(0), T = xp.size(1), H = xp.size(2) / G;
  at::Tensor hs = at::empty({B, T, H}, xp.options());
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "min_forward", [&] {
    const scalar_t* x = xp.data_ptr<scalar_t>(); const scalar_t* h_0 = h0.data_ptr<scalar_t>();
    scalar_t* h = hs.data_ptr<scalar_t>();
    for_rows(B, T * H, [&](int64_t b) {
      const scalar_t* xb = x + b * T * G * H;
      if constexpr (G == 2) mingru_row_fwd(xb, h_0 + b * H, h + b * T * H, T, H);
      else minlstm_row_fwd(xb, h_0 + b * H, h + b * T * H, T, H);
    });
  });
  return hs;
}

// g_out (B, T, H): gradient of every h_t; xp, h0 and the hs min_forward returned
// → d_xp (B, T, G*H), d_h0 (B, H).
template <int64_t G>
std::tuple<at::Tensor, at::Tensor> min_backward(const at::Tensor& g_out_in, const at::Tensor& xp_in,
                                                const at::Tensor& h0_in, const at::Tensor& hs_in) {
  check_inputs(xp_in, h0_in, G);
  const at::Tensor g_out = g_out_in.contiguous(), xp = xp_in.contiguous(), h0 = h0_in.contiguous();
  const at::Tensor hs = hs_in.contiguous();
  const int64_t B = xp.size(0), T = xp.size(1), H = xp.size(2) / G;
  TORCH_CHECK(g_out.sizes() == hs.sizes() && hs.size(0) == B && hs.size(1) == T && hs.size(2) == H,
              "charrnn min: g_out and hs must be (B, T, H)");
  at::Tensor d_xp = at::empty_like(xp), d_h0 = at::zeros_like(h0);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "min_backward", [&] {
    const scalar_t* g = g_out.data_ptr<scalar_t>(); const scalar_t* x = xp.data_ptr<scalar_t>();
    const scalar_t* h_0 = h0.data_ptr<scalar_t>(); const scalar_t* h = hs.data_ptr<scalar_t>();
    scalar_t* dx = d_xp.data_ptr<scalar_t>(); scalar_t* carry = d_h0.data_ptr<scalar_t>();
    for_rows(B, T * H, [&](int64_t b) {
      const int64_t xo = b * T * G * H, ho = b * T * H;
      if constexpr (G == 2) mingru_row_bwd(g + ho, x + xo, h_0 + b * H, h + ho, dx + xo, carry + b * H, T, H);
      else minlstm_row_bwd(g + ho, x + xo, h_0 + b * H, h + ho, dx + xo, carry + b * H, T, H);
    });
  });
  return {d_xp, d_h0};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(charrnn_native, m) {
  m.def("mingru_forward(Tensor xp, Tensor h0) -> Tensor");
  m.def("mingru_backward(Tensor g_out, Tensor xp, Tensor h0, Tensor hs) -> (Tensor, Tensor)");
  m.def("minlstm_forward(Tensor xp, Tensor h0) -> Tensor");
  m.def("minlstm_backward(Tensor g_out, Tensor xp, Tensor h0, Tensor hs) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(charrnn_native, CPU, m) {
  m.impl("mingru_forward", &min_forward<2>);
  m.impl("mingru_backward", &min_backward<2>);
  m.impl("minlstm_forward", &min_forward<3>);
  m.impl("minlstm_backward", &min_backward<3>);
}
