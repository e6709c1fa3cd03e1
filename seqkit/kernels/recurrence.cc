// The time loops of seqkit's fused recurrences as TensorFlow CPU ops.
//
// Each op runs the loop of one function of seqkit/layers/fused.py with the same
// equations, the same saved derivatives and the same outputs: per step, the
// recurrent matmul (a register-blocked kernel over U packed once per call, see
// "matmul" below), then one pass over each batch row for the gate math. What a
// step of the XLA loop spends in ten or so small kernels is one pass here.
//
// seqkit/kernels/__init__.py compiles this file once per machine and falls back
// to the XLA loops when it cannot; tests/test_kernels.py checks every op against
// the XLA loop and, through the layers, against the readable cells.
//
// Layout: time-major and row-major. xw (T, B, G*H) is x W + b for all steps,
// U (H, G*H), states (B, H). Notation as in fused.py: δ is the loss gradient,
// a a gate's pre-activation, σ'(a) = s (1 - s), tanh'(a) = 1 - y².

#define EIGEN_USE_THREADS

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "unsupported/Eigen/CXX11/Tensor"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace seqkit {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;
using Device = Eigen::ThreadPoolDevice;
using Index = Eigen::Index;
using Row = Eigen::Map<Eigen::ArrayXf>;
using ConstRow = Eigen::Map<const Eigen::ArrayXf>;

// ---------------------------------------------------------------------------- threads
// A recurrence is T short steps, each one or two parallel phases (a matmul,
// the gate math) that must finish before the next starts. Eigen's parallelFor
// would hand each phase to the pool and wake its threads: tens of µs a phase,
// as much as the work of a step at H = 256. A Team schedules its helpers on the
// pool once per op call; they then spin between phases and claim tasks from a
// shared counter, as the calling thread does. A helper that the pool starts
// late (its threads busy elsewhere) only joins late: the calling thread claims
// whatever is left, so progress never waits on a helper, and a helper that
// starts after the op is done just returns. Tasks are independent and each is
// computed the same way whichever thread runs it.

// Pauses a waiting thread spins before it yields its core to others (a pause is
// tens to a hundred cycles): short, so that on a busy machine (more threads
// than cores) a waiting thread soon lets the one it waits for run.
constexpr int kSpins = 1 << 10;

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

class Team {
 public:
  // max_tasks: the most tasks any phase will have (helpers beyond max_tasks - 1 would only spin).
  Team(const Device& d, Index max_tasks) : state_(std::make_shared<State>()) {
    for (Index i = 1; i < std::min<Index>(d.numThreads(), max_tasks); ++i) {
      std::shared_ptr<State> state = state_;
      d.enqueueNoNotification([state] { help(*state); });
    }
  }

  ~Team() { state_->closed.store(true, std::memory_order_release); }

  // Runs fn(i) for i in [0, n) across the team; returns when all are done.
  void parallel(Index n, const std::function<void(Index)>& fn) {
    State& s = *state_;
    if (n <= 0) return;
    if (n > kMask) {  // more tasks than a ticket counts: never the case here, but stay correct
      for (Index i = 0; i < n; ++i) fn(i);
      return;
    }
    // Nobody runs a task of the last phase any more (all n were done), so fn
    // and done can change; the new ticket publishes them (release).
    s.fn = &fn;
    s.done.store(0, std::memory_order_relaxed);
    phase_ = phase_ % kMaxPhase + 1;
    s.ticket.store(ticket(phase_, n, 0), std::memory_order_release);
    s.phase.store(phase_, std::memory_order_release);
    work(s, phase_);
    for (int spins = 0; s.done.load(std::memory_order_acquire) < n;)  // a helper finishes its last task
      if (++spins < kSpins) relax(); else std::this_thread::yield();
  }

 private:
  // A ticket is one word: phase (24 bits) | tasks in the phase (20) | next task (20).
  // A claim compares and swaps the whole word, so it can only take a task of
  // the phase it read, and only one that exists.
  static constexpr uint64_t kMask = (1u << 20) - 1, kMaxPhase = (1u << 24) - 1;
  static uint64_t ticket(uint64_t phase, uint64_t tasks, uint64_t next) { return phase << 40 | tasks << 20 | next; }

  struct State {
    alignas(64) std::atomic<uint64_t> ticket{0};
    std::atomic<uint64_t> phase{0};
    std::atomic<bool> closed{false};
    const std::function<void(Index)>* fn = nullptr;
    alignas(64) std::atomic<Index> done{0};  // tasks finished in this phase: its own cache line
  };

  // Claims and runs tasks of phase `phase` until none are left (or a newer phase is out).
  static void work(State& s, uint64_t phase) {
    for (;;) {
      uint64_t t = s.ticket.load(std::memory_order_acquire);
      const uint64_t next = t & kMask;
      if (t >> 40 != phase || next >= (t >> 20 & kMask)) return;
      if (s.ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) {
        (*s.fn)(static_cast<Index>(next));
        s.done.fetch_add(1, std::memory_order_release);
      }
    }
  }

  static void help(State& s) {
    uint64_t seen = 0;
    for (int idle = 0; !s.closed.load(std::memory_order_acquire);) {
      const uint64_t phase = s.phase.load(std::memory_order_acquire);
      if (phase != seen) {
        work(s, phase);
        seen = phase;
        idle = 0;
      } else if (++idle < kSpins) {
        relax();
      } else {
        std::this_thread::yield();  // the caller is between phases for long: let others run
      }
    }
  }

  std::shared_ptr<State> state_;
  uint64_t phase_ = 0;
};

// ---------------------------------------------------------------------------- matmul
// The recurrent matmul multiplies by the same right-hand side at every step: U
// in the forward loop, U^T in the backward one. It is packed once per call into
// column panels of kPanel columns, each a contiguous (K, kPanel) block, and each
// step computes (kTileRows, kPanel) tiles of the output over the whole K with
// the accumulators in registers: a BLAS kernel without the per-call packing of
// U, which at B = 64 costs as much as the product. Each finished tile row goes
// to an epilogue (SimpleRNN puts its gate math there). Each tile is summed in a
// fixed order by one thread, so results do not depend on the thread count.

// The tile shape is the instruction set's (SEQKIT_KERNEL_ISA in __init__.py
// chooses it at build time; kIsa names the variant built):
//   avx512   8 rows x 32 columns: 8 x 2 zmm accumulators, 2 panel vectors and
//            a broadcast, 19 of 32 registers;
//   avx2     6 rows x 16 columns: 6 x 2 ymm accumulators, 2 panel vectors and
//            a broadcast, 15 of 16 registers (the shape of BLIS' Haswell kernel);
//   generic  portable C++ (any CPU, ARM64 included): 4 rows x 16 columns,
//            64 accumulators the compiler's vectoriser keeps in registers.
#if defined(__AVX512F__) && !defined(SEQKIT_KERNEL_GENERIC)
#define SEQKIT_TILE_AVX512 1
constexpr const char* kIsa = "avx512";
constexpr Index kPanel = 32;
constexpr Index kTileRows = 8;
#elif defined(__AVX2__) && defined(__FMA__) && !defined(SEQKIT_KERNEL_GENERIC)
#define SEQKIT_TILE_AVX2 1
constexpr const char* kIsa = "avx2";
constexpr Index kPanel = 16;
constexpr Index kTileRows = 6;
#else
constexpr const char* kIsa = "generic";
constexpr Index kPanel = 16;
constexpr Index kTileRows = 4;
#endif

// A packed right-hand side (K, panels * kPanel) in panel order: data[p][k][j].
struct Packed {
  Tensor data;
  Index K = 0, panels = 0;
};

// Packs the columns [offset, offset + N) of U (rows of ld floats) as a (K = rows,
// N) right-hand side, or, when transpose, the transpose of its columns
// [offset, offset + K); columns past N are zeros.
tensorflow::Status pack_block(OpKernelContext* ctx, const Tensor& U, Index offset, Index width, bool transpose,
                              Packed* out) {
  const Index rows = U.dim_size(0), ld = U.dim_size(1);
  const Index K = transpose ? width : rows, N = transpose ? rows : width;
  out->K = K;
  out->panels = (N + kPanel - 1) / kPanel;
  TF_RETURN_IF_ERROR(
      ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({out->panels * K * kPanel}), &out->data));
  const float* u = U.flat<float>().data();
  float* p = out->data.flat<float>().data();
  for (Index panel = 0; panel < out->panels; ++panel, p += K * kPanel) {
    if (!transpose) {
      for (Index k = 0; k < K; ++k)
        for (Index j = 0, n = panel * kPanel; j < kPanel; ++j, ++n) p[k * kPanel + j] = n >= N ? 0.0f : u[k * ld + offset + n];
      continue;
    }
    // The transpose reads the panel's kPanel rows of U 16 columns (a cache line)
    // at a time. Read a float at a time, each k touched kPanel lines ld floats
    // apart, which for a power-of-two ld share one L1 set and evict each other:
    // at H = 512 that made packing 1.3 ms, most of a one-step backward.
    for (Index k0 = 0; k0 < K; k0 += 16)
      for (Index j = 0, n = panel * kPanel; j < kPanel; ++j, ++n)
        for (Index k = k0; k < std::min<Index>(K, k0 + 16); ++k)
          p[k * kPanel + j] = n >= N ? 0.0f : u[n * ld + offset + k];
  }
  return tensorflow::OkStatus();
}

// acc (R, kPanel) = a (R, K; rows lda apart) @ panel (K, kPanel).
template <int R>
inline void tile_kernel(const float* a, Index lda, const float* panel, Index K, float* acc) {
#if defined(SEQKIT_TILE_AVX512)
  __m512 v[R][2];
  for (int r = 0; r < R; ++r) v[r][0] = v[r][1] = _mm512_setzero_ps();
  for (Index k = 0; k < K; ++k) {
    const __m512 w0 = _mm512_loadu_ps(panel + k * kPanel), w1 = _mm512_loadu_ps(panel + k * kPanel + 16);
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * lda + k]);
      v[r][0] = _mm512_fmadd_ps(x, w0, v[r][0]);
      v[r][1] = _mm512_fmadd_ps(x, w1, v[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_store_ps(acc + r * kPanel, v[r][0]);
    _mm512_store_ps(acc + r * kPanel + 16, v[r][1]);
  }
#elif defined(SEQKIT_TILE_AVX2)
  __m256 v[R][2];
  for (int r = 0; r < R; ++r) v[r][0] = v[r][1] = _mm256_setzero_ps();
  for (Index k = 0; k < K; ++k) {
    const __m256 w0 = _mm256_loadu_ps(panel + k * kPanel), w1 = _mm256_loadu_ps(panel + k * kPanel + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r * lda + k);
      v[r][0] = _mm256_fmadd_ps(x, w0, v[r][0]);
      v[r][1] = _mm256_fmadd_ps(x, w1, v[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_store_ps(acc + r * kPanel, v[r][0]);
    _mm256_store_ps(acc + r * kPanel + 8, v[r][1]);
  }
#else
  float v[R][kPanel] = {};
  for (Index k = 0; k < K; ++k)
    for (int r = 0; r < R; ++r) {
      const float x = a[r * lda + k];
      for (Index j = 0; j < kPanel; ++j) v[r][j] += x * panel[k * kPanel + j];
    }
  for (int r = 0; r < R; ++r) std::copy_n(v[r], kPanel, acc + r * kPanel);
#endif
}

inline void tile(const float* a, Index lda, const float* panel, Index K, float* acc, Index rows) {
  switch (rows) {  // a whole tile is kTileRows rows; the last one of a batch may be shorter
    case 1: return tile_kernel<1>(a, lda, panel, K, acc);
    case 2: return tile_kernel<2>(a, lda, panel, K, acc);
    case 3: return tile_kernel<3>(a, lda, panel, K, acc);
#if defined(SEQKIT_TILE_AVX512) || defined(SEQKIT_TILE_AVX2)
    case 4: return tile_kernel<4>(a, lda, panel, K, acc);
    case 5: return tile_kernel<5>(a, lda, panel, K, acc);
#endif
#if defined(SEQKIT_TILE_AVX512)
    case 6: return tile_kernel<6>(a, lda, panel, K, acc);
    case 7: return tile_kernel<7>(a, lda, panel, K, acc);
#endif
    default: return tile_kernel<kTileRows>(a, lda, panel, K, acc);
  }
}

// For every row b < B and panel p: epilogue(b, p, acc) with acc the kPanel values
// of a (B, K) @ packed in that row and panel. Panels are split across the team.
template <typename Epilogue>
void matmul(Team& team, const float* a, Index lda, const Packed& u, Index B, Epilogue epilogue) {
  const Index K = u.K;
  const float* packed = u.data.flat<float>().data();
  team.parallel(u.panels, [&](Index p) {
    alignas(64) float acc[kTileRows * kPanel];
    for (Index r = 0; r < B; r += kTileRows) {
      const Index rows = std::min(kTileRows, B - r);
      tile(a + r * lda, lda, packed + p * K * kPanel, K, acc, rows);
      for (Index i = 0; i < rows; ++i) epilogue(r + i, p, acc + i * kPanel);
    }
  });
}

// c (B, N) (+)= a (B, K) @ u; rows of c ldc apart.
void matmul_into(Team& d, const float* a, Index lda, const Packed& u, Index N, float* c, Index ldc, Index B,
                 bool accumulate = false) {
  matmul(d, a, lda, u, B, [&](Index b, Index p, const float* acc) {
    const Index cols = std::min(kPanel, N - p * kPanel);
    float* out = c + b * ldc + p * kPanel;
    for (Index j = 0; j < cols; ++j) out[j] = accumulate ? out[j] + acc[j] : acc[j];
  });
}

// ---------------------------------------------------------------------------- 16 units at a time
// The epilogues work on 16 consecutive units: Eigen arrays of 16 floats, one
// AVX-512 register (two AVX ones), with Eigen's vectorised tanh. A chunk past
// the last unit is padded with zeros and only its first n values are stored.

using V = Eigen::Array<float, 16, 1>;

inline V load(const float* p, Index n = 16) {
  if (n == 16) return Eigen::Map<const V>(p);
  V v = V::Zero();
  std::copy_n(p, n, v.data());
  return v;
}

inline void store(float* p, const V& v, Index n = 16) {
  if (n == 16) {
    Eigen::Map<V> out(p);
    out = v;
  } else {
    std::copy_n(v.data(), n, p);
  }
}

// ---------------------------------------------------------------------------- gate math

// Rows per task of for_rows: a few thousand units' work.
inline Index row_block(Index H) { return std::max<Index>(1, 2048 / H); }

// The most tasks a phase of an op has: for_rows' row blocks, or the panels of
// its widest matmul (N columns, kPanel to a panel).
inline Index max_tasks(Index B, Index H, Index N) {
  return std::max((B + row_block(H) - 1) / row_block(H), (N + kPanel - 1) / kPanel);
}

// Runs fn(b) for every batch row b, in blocks of rows across the team.
template <typename Fn>
void for_rows(Team& team, Index B, Index H, Fn fn) {
  const Index block = row_block(H);
  team.parallel((B + block - 1) / block, [&](Index i) {
    for (Index b = i * block; b < std::min(B, (i + 1) * block); ++b) fn(b);
  });
}

// σ(a) = (1 + tanh(a / 2)) / 2, in place (as fused.py: Eigen's tanh is vectorised).
inline void sigmoid(float* a, Index n) {
  Row x(a, n);
  x = 0.5f + 0.5f * (0.5f * x).tanh();
}

inline void tanh(float* a, Index n) {
  Row x(a, n);
  x = x.tanh();
}

// Input i of the op as a float pointer.
inline const float* in(OpKernelContext* ctx, int i) { return ctx->input(i).flat<float>().data(); }

// Output i, allocated; on failure the op's status is set (callers check it).
inline float* out(OpKernelContext* ctx, int i, const TensorShape& shape) {
  Tensor* t = nullptr;
  const tensorflow::Status status = ctx->allocate_output(i, shape, &t);
  if (!status.ok()) ctx->SetStatus(status);
  return status.ok() ? t->flat<float>().data() : nullptr;
}

inline float* temp(OpKernelContext* ctx, const TensorShape& shape, Tensor* t) {
  const tensorflow::Status status = ctx->allocate_temp(tensorflow::DT_FLOAT, shape, t);
  if (!status.ok()) ctx->SetStatus(status);
  return status.ok() ? t->flat<float>().data() : nullptr;
}

// false (and the op's status set to InvalidArgument(message...)) unless ok.
template <typename... Args>
bool require(OpKernelContext* ctx, bool ok, Args... message) {
  if (!ok) ctx->SetStatus(tensorflow::errors::InvalidArgument(message...));
  return ok;
}

// Checks U (H, gates * H), the sequence input (T, B, seq_gates * H) and the (B, H)
// inputs listed; sets T, B, H.
bool check_shapes(OpKernelContext* ctx, int gates, int xw_input, int seq_gates, int u_input,
                  std::initializer_list<int> states, Index* T, Index* B, Index* H) {
  const Tensor &xw = ctx->input(xw_input), &U = ctx->input(u_input);
  if (!require(ctx, U.dims() == 2 && U.dim_size(0) > 0 && U.dim_size(1) == gates * U.dim_size(0),
               "U must be (units, ", gates, " * units), got ", U.shape().DebugString()))
    return false;
  *H = U.dim_size(0);
  if (!require(ctx, xw.dims() == 3 && xw.dim_size(2) == seq_gates * *H, "sequence must be (T, B, ", seq_gates,
               " * units), got ", xw.shape().DebugString()))
    return false;
  *T = xw.dim_size(0);
  *B = xw.dim_size(1);
  for (int i : states) {
    const Tensor& s = ctx->input(i);
    if (!require(ctx, s.dims() == 2 && s.dim_size(0) == *B && s.dim_size(1) == *H, "state must be (", *B, ", ",
                 *H, "), got ", s.shape().DebugString()))
      return false;
  }
  return true;
}

// Checks the backward's input `saved`: (planes, T, B, H) values.
bool check_saved(OpKernelContext* ctx, int input, Index planes, Index T, Index B, Index H) {
  return require(ctx, ctx->input(input).NumElements() == planes * T * B * H, "saved must be (", planes,
                 ", T, B, units), got ", ctx->input(input).shape().DebugString());
}

// ---------------------------------------------------------------------------- masks
// The ops named ...Masked (template argument kMasked) take a last input mask
// (T, B), nonzero at a row's real steps (fused.py's, Keras' semantics). A
// masked step carries the row's states forward, h_t = h_{t-1} (and c_t =
// c_{t-1}), and saves 0 for its gate derivatives, so no error reaches its
// gates, and 1 for the gate that carries the error back a step (LSTM's f,
// GRU's z). The GRU's backward ops then need no mask; the LSTM's and the
// SimpleRNN's add the pass-through (1 - m_t) δh_t to δh_{t-1}. The unmasked
// ops are the same code with kMasked false: the mask tests compile away.

// Checks the mask input: (T, B).
bool check_mask(OpKernelContext* ctx, int input, Index T, Index B) {
  const Tensor& m = ctx->input(input);
  return require(ctx, m.dims() == 2 && m.dim_size(0) == T && m.dim_size(1) == B, "mask must be (T, B) = (", T,
                 ", ", B, "), got ", m.shape().DebugString());
}

// Row b's masked step t: h_t = h_{t-1}; saved planes 0, except plane `carry` = 1.
inline void masked_step(const float* h_prev, float* h, float* s, Index planes, Index carry, Index plane, Index at,
                        Index H) {
  std::copy_n(h_prev, H, h);
  for (Index k = 0; k < planes; ++k) std::fill_n(s + k * plane + at, H, k == carry ? 1.0f : 0.0f);
}

// ---------------------------------------------------------------------------- SimpleRNN
// h_t = φ(xw_t + h_{t-1} U), φ in tanh, relu, linear. Panels of 32 units; the
// forward epilogue applies φ, the backward one starts the previous step's δa.

enum class Activation { kTanh, kRelu, kLinear };

Activation parse_activation(OpKernelConstruction* ctx) {
  std::string name;
  const tensorflow::Status status = ctx->GetAttr("activation", &name);
  if (!status.ok()) ctx->CtxFailure(status);
  if (name == "relu") return Activation::kRelu;
  if (name == "linear") return Activation::kLinear;
  return Activation::kTanh;
}

inline V activate(Activation phi, const V& a) {
  if (phi == Activation::kTanh) return a.tanh();
  if (phi == Activation::kRelu) return a.max(0.0f);
  return a;
}

// δa = δh ⊙ φ'(a), from y = φ(a).
inline V activation_grad(Activation phi, const V& dh, const V& y) {
  if (phi == Activation::kTanh) return dh * (1.0f - y * y);
  if (phi == Activation::kRelu) return dh * (y > 0.0f).cast<float>();  // as fused.py: NaN stays NaN
  return dh;
}

// Calls fn(u0, n) for the chunks of 16 units (n of them valid) in panel p of
// `units` units per panel (p = 0, units = H: a whole row).
template <typename Fn>
inline void for_chunks(Index p, Index units, Index H, Fn fn) {
  for (Index u0 = p * units; u0 < std::min(H, (p + 1) * units); u0 += 16) fn(u0, std::min<Index>(16, H - u0));
}

template <bool kMasked>
class SimpleRnnForward : public OpKernel {
 public:
  explicit SimpleRnnForward(OpKernelConstruction* ctx) : OpKernel(ctx), phi_(parse_activation(ctx)) {}

  void Compute(OpKernelContext* ctx) override {  // xw, U, h0 (, mask)
    Index T, B, H;
    if (!check_shapes(ctx, 1, 0, 1, 1, {2}, &T, &B, &H)) return;
    if (kMasked && !check_mask(ctx, 3, T, B)) return;
    Packed U;
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(1), 0, H, false, &U));
    const float *xw = in(ctx, 0), *h0 = in(ctx, 2), *m = kMasked ? in(ctx, 3) : nullptr;
    float* hs = out(ctx, 0, TensorShape({T, B, H}));
    float* h_T = out(ctx, 1, TensorShape({B, H}));
    if (!ctx->status().ok()) return;
    Team d(ctx->eigen_device<Device>(), max_tasks(B, H, H));
    for (Index t = 0; t < T; ++t) {
      const float* h_prev = t == 0 ? h0 : hs + (t - 1) * B * H;
      matmul(d, h_prev, H, U, B, [&](Index b, Index p, const float* acc) {
        for_chunks(p, kPanel, H, [&](Index u0, Index n) {
          const Index at = (t * B + b) * H + u0;
          if (kMasked && m[t * B + b] == 0.0f) {  // a masked step: h_t = h_{t-1}
            std::copy_n(h_prev + b * H + u0, n, hs + at);
            return;
          }
          const V a = load(acc + u0 - p * kPanel) + load(xw + at, n);  // a_t = h_{t-1} U + x_t W + b
          store(hs + at, activate(phi_, a), n);                       // h_t = φ(a_t)
        });
      });
    }
    std::copy_n(T == 0 ? h0 : hs + (T - 1) * B * H, B * H, h_T);
  }

 private:
  Activation phi_;
};

template <bool kMasked>
class SimpleRnnBackward : public OpKernel {
 public:
  explicit SimpleRnnBackward(OpKernelConstruction* ctx) : OpKernel(ctx), phi_(parse_activation(ctx)) {}

  void Compute(OpKernelContext* ctx) override {  // d_hs, d_hT, hs, U (, mask)
    Index T, B, H;
    if (!check_shapes(ctx, 1, 0, 1, 3, {1}, &T, &B, &H)) return;
    if (!require(ctx, ctx->input(2).shape() == ctx->input(0).shape(), "hs must have d_hs's shape (T, B, units)")) return;
    if (kMasked && !check_mask(ctx, 4, T, B)) return;
    Packed UT;
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(3), 0, H, true, &UT));
    const float *d_hs = in(ctx, 0), *d_hT = in(ctx, 1), *hs = in(ctx, 2), *m = kMasked ? in(ctx, 4) : nullptr;
    float* dA = out(ctx, 0, TensorShape({T, B, H}));
    float* dh0 = out(ctx, 1, TensorShape({B, H}));
    Tensor pass_buffer;  // masked: (1 - m_{t+1}) δh_{t+1}, the part of δh_t that skips step t+1's gate
    float* pass = kMasked ? temp(ctx, TensorShape({B, H}), &pass_buffer) : nullptr;
    if (!ctx->status().ok()) return;
    if (T == 0) {
      std::copy_n(d_hT, B * H, dh0);
      return;
    }
    if (kMasked) std::fill_n(pass, B * H, 0.0f);
    Team d(ctx->eigen_device<Device>(), max_tasks(B, H, H));
    // δa_t = δh_t ⊙ φ'(a_t), δh_t = (output's δh_t) + δh from step t+1 (recurrent)
    // masked: δh_t gains (1 - m_{t+1}) δh_{t+1}, and δa_t = m_t δh_t ⊙ φ'(a_t)
    auto step = [&](Index t, Index b, Index u0, Index n, const V& recurrent) {
      const Index at = (t * B + b) * H + u0;
      if (kMasked) {
        const V dh = load(d_hs + at, n) + recurrent + load(pass + b * H + u0, n);  // δh_t
        const bool real = m[t * B + b] != 0.0f;
        store(pass + b * H + u0, real ? V(V::Zero()) : dh, n);
        store(dA + at, real ? activation_grad(phi_, dh, load(hs + at, n)) : V(V::Zero()), n);
        return;
      }
      store(dA + at, activation_grad(phi_, load(d_hs + at, n) + recurrent, load(hs + at, n)), n);
    };
    for_rows(d, B, H, [&](Index b) {
      for_chunks(0, H, H, [&](Index u0, Index n) { step(T - 1, b, u0, n, load(d_hT + b * H + u0, n)); });
    });
    for (Index t = T - 1; t >= 0; --t) {
      matmul(d, dA + t * B * H, H, UT, B, [&](Index b, Index p, const float* acc) {
        for_chunks(p, kPanel, H, [&](Index u0, Index n) {
          const V recurrent = load(acc + u0 - p * kPanel);  // δh_{t-1} from step t: δa_t U^T
          if (t > 0)
            step(t - 1, b, u0, n, recurrent);
          else if (kMasked)
            store(dh0 + b * H + u0, recurrent + load(pass + b * H + u0, n), n);  // + (1 - m_0) δh_0
          else
            store(dh0 + b * H + u0, recurrent, n);
        });
      });
    }
  }

 private:
  Activation phi_;
};

// ---------------------------------------------------------------------------- LSTM
// Gate blocks i, f, c, o. saved (6, T, B, H): per step g σ'(i), c_{t-1} σ'(f),
// i tanh'(g), tanh(c) σ'(o), o tanh'(c) and f (fused.lstm_forward's six arrays).
// The gate math is a pass over each row after the matmul, not the matmul's
// epilogue as in SimpleRNN: measured, an epilogue (panels holding 16 units' four
// gates) made the forward 25 % slower at H = 256 and 14 % at H = 512, as the
// wider panels no longer stay in L1 and the gate math's stores interleave
// with the matmul's loads.

template <bool kMasked>
class LstmForward : public OpKernel {
 public:
  explicit LstmForward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {  // xw, U, h0, c0 (, mask)
    Index T, B, H;
    if (!check_shapes(ctx, 4, 0, 4, 1, {2, 3}, &T, &B, &H)) return;
    if (kMasked && !check_mask(ctx, 4, T, B)) return;
    Packed U;
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(1), 0, 4 * H, false, &U));
    Tensor z_buffer;
    const float *xw = in(ctx, 0), *h0 = in(ctx, 2), *m = kMasked ? in(ctx, 4) : nullptr;
    float* hs = out(ctx, 0, TensorShape({T, B, H}));
    float* h_T = out(ctx, 1, TensorShape({B, H}));
    float* c = out(ctx, 2, TensorShape({B, H}));  // c_t, updated in place; c_T at the end
    float* s = out(ctx, 3, TensorShape({6, T, B, H}));
    float* z = temp(ctx, TensorShape({B, 4 * H}), &z_buffer);
    if (!ctx->status().ok()) return;
    std::copy_n(in(ctx, 3), B * H, c);
    const Index plane = T * B * H;
    Team d(ctx->eigen_device<Device>(), max_tasks(B, H, 4 * H));
    for (Index t = 0; t < T; ++t) {
      const float* h_prev = t == 0 ? h0 : hs + (t - 1) * B * H;
      matmul_into(d, h_prev, H, U, 4 * H, z, 4 * H, B);  // h_{t-1} U
      for_rows(d, B, H, [&](Index b) {
        if (kMasked && m[t * B + b] == 0.0f)  // h_t = h_{t-1}, c_t = c_{t-1} (in place); saved 0, f = 1
          return masked_step(h_prev + b * H, hs + (t * B + b) * H, s, 6, 5, plane, (t * B + b) * H, H);
        float* a = z + b * 4 * H;
        Row(a, 4 * H) += ConstRow(xw + (t * B + b) * 4 * H, 4 * H);  // a_t = x_t W + b + h_{t-1} U
        sigmoid(a, 2 * H);                                           // i_t, f_t = σ(a_i), σ(a_f)
        tanh(a + 2 * H, H);                                          // g_t = tanh(a_c)
        sigmoid(a + 3 * H, H);                                       // o_t = σ(a_o)
        const ConstRow i(a, H), f(a + H, H), g(a + 2 * H, H), o(a + 3 * H, H);
        const Index at = (t * B + b) * H;
        Row c_t(c + b * H, H), tanh_c(s + 5 * plane + at, H);  // f's slot holds tanh(c_t) for a moment
        Row(s + plane + at, H) = c_t * f * (1.0f - f);        // c_{t-1} σ'(f), before c is overwritten
        c_t = f * c_t + i * g;                                 // c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        tanh_c = c_t.tanh();
        Row(hs + at, H) = o * tanh_c;  // h_t = o_t ⊙ tanh(c_t)
        Row(s + at, H) = g * i * (1.0f - i);
        Row(s + 2 * plane + at, H) = i * (1.0f - g * g);
        Row(s + 3 * plane + at, H) = tanh_c * o * (1.0f - o);
        Row(s + 4 * plane + at, H) = o * (1.0f - tanh_c * tanh_c);
        tanh_c = f;
      });
    }
    std::copy_n(T == 0 ? h0 : hs + (T - 1) * B * H, B * H, h_T);
  }
};

template <bool kMasked>
class LstmBackward : public OpKernel {
 public:
  explicit LstmBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {  // d_hs, d_hT, d_cT, saved, U (, mask)
    Index T, B, H;
    if (!check_shapes(ctx, 4, 0, 1, 4, {1, 2}, &T, &B, &H)) return;
    if (!check_saved(ctx, 3, 6, T, B, H)) return;
    if (kMasked && !check_mask(ctx, 5, T, B)) return;
    Packed UT;
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(4), 0, 4 * H, true, &UT));
    const float *d_hs = in(ctx, 0), *s = in(ctx, 3), *m = kMasked ? in(ctx, 5) : nullptr;
    float* dZ = out(ctx, 0, TensorShape({T, B, 4 * H}));
    float* dh = out(ctx, 1, TensorShape({B, H}));  // δh flowing into step t from t+1; δh_0 at the end
    float* dc = out(ctx, 2, TensorShape({B, H}));  // likewise δc
    if (!ctx->status().ok()) return;
    std::copy_n(in(ctx, 1), B * H, dh);
    std::copy_n(in(ctx, 2), B * H, dc);
    const Index plane = T * B * H;
    Team d(ctx->eigen_device<Device>(), max_tasks(B, H, H));
    for (Index t = T - 1; t >= 0; --t) {
      for_rows(d, B, H, [&](Index b) {
        const Index at = (t * B + b) * H;
        Row dh_t(dh + b * H, H), dc_t(dc + b * H, H);
        dh_t += ConstRow(d_hs + at, H);                  // δh_t: from the output and from step t+1
        float* dz = dZ + (t * B + b) * 4 * H;            // δa_t of the four gates
        if (kMasked && m[t * B + b] == 0.0f) {  // a masked step: δa_t = 0, δh_{t-1} = δh_t, δc_{t-1} = δc_t
          std::fill_n(dz, 4 * H, 0.0f);
          return;
        }
        dc_t += dh_t * ConstRow(s + 4 * plane + at, H);  // δc_t = δc_{t+1} ⊙ f_{t+1} + δh_t ⊙ o_t tanh'(c_t)
        Row(dz, H) = dc_t * ConstRow(s + at, H);
        Row(dz + H, H) = dc_t * ConstRow(s + plane + at, H);
        Row(dz + 2 * H, H) = dc_t * ConstRow(s + 2 * plane + at, H);
        Row(dz + 3 * H, H) = dh_t * ConstRow(s + 3 * plane + at, H);
        dc_t *= ConstRow(s + 5 * plane + at, H);  // δc_{t-1} = δc_t ⊙ f_t
        if (kMasked) dh_t.setZero();              // a real step's δh_{t-1} is the matmul's alone
      });
      matmul_into(d, dZ + t * B * 4 * H, 4 * H, UT, H, dh, H, B, kMasked);  // δh_{t-1} = δa_t U^T (+ (1 - m_t) δh_t)
    }
  }
};

// ---------------------------------------------------------------------------- GRU, reset_after
// ĥ = tanh(xw_h + r ⊙ (h U_h + b^h_h)). saved (5, T, B, H): ∂h/∂a_z, ∂h/∂a_r,
// ∂h/∂a_ĥ, that times r, and z (fused.gru_reset_after_forward's five arrays).

template <bool kMasked>
class GruResetAfterForward : public OpKernel {
 public:
  explicit GruResetAfterForward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {  // xw, U, b, h0 (, mask)
    Index T, B, H;
    if (!check_shapes(ctx, 3, 0, 3, 1, {3}, &T, &B, &H)) return;
    if (!require(ctx, ctx->input(2).NumElements() == 3 * H, "recurrent bias must be (3 * units,)")) return;
    if (kMasked && !check_mask(ctx, 4, T, B)) return;
    Packed U;
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(1), 0, 3 * H, false, &U));
    Tensor hu_buffer;
    const float *xw = in(ctx, 0), *bias = in(ctx, 2), *h0 = in(ctx, 3), *m = kMasked ? in(ctx, 4) : nullptr;
    float* hs = out(ctx, 0, TensorShape({T, B, H}));
    float* h_T = out(ctx, 1, TensorShape({B, H}));
    float* s = out(ctx, 2, TensorShape({5, T, B, H}));
    float* hu = temp(ctx, TensorShape({B, 3 * H}), &hu_buffer);
    if (!ctx->status().ok()) return;
    const Index plane = T * B * H;
    Team d(ctx->eigen_device<Device>(), max_tasks(B, H, 3 * H));
    for (Index t = 0; t < T; ++t) {
      const float* h_prev = t == 0 ? h0 : hs + (t - 1) * B * H;
      matmul_into(d, h_prev, H, U, 3 * H, hu, 3 * H, B);  // h_{t-1} U
      for_rows(d, B, H, [&](Index b) {
        if (kMasked && m[t * B + b] == 0.0f)  // h_t = h_{t-1}; saved 0, z = 1
          return masked_step(h_prev + b * H, hs + (t * B + b) * H, s, 5, 4, plane, (t * B + b) * H, H);
        float* a = hu + b * 3 * H;
        const float* x = xw + (t * B + b) * 3 * H;
        Row(a, 3 * H) += ConstRow(bias, 3 * H);                        // h_{t-1} U + b^h
        Row(a, 2 * H) += ConstRow(x, 2 * H);                           // a_z, a_r
        sigmoid(a, 2 * H);                                             // z_t, r_t
        const ConstRow z(a, H), r(a + H, H), hu_h(a + 2 * H, H), h_tm1(h_prev + b * H, H);
        const Index at = (t * B + b) * H;
        Row n(s + 2 * plane + at, H);  // ĥ_t, in the slot of ∂h/∂a_ĥ until that is known
        n = (ConstRow(x + 2 * H, H) + r * hu_h).tanh();  // ĥ_t = tanh(xw_h + r_t ⊙ (h_{t-1} U_h + b^h_h))
        Row(hs + at, H) = z * h_tm1 + (1.0f - z) * n;    // h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ ĥ_t
        Row(s + at, H) = (h_tm1 - n) * z * (1.0f - z);
        n = (1.0f - z) * (1.0f - n * n);
        Row(s + plane + at, H) = n * hu_h * r * (1.0f - r);
        Row(s + 3 * plane + at, H) = n * r;
        Row(s + 4 * plane + at, H) = z;
      });
    }
    std::copy_n(T == 0 ? h0 : hs + (T - 1) * B * H, B * H, h_T);
  }
};

class GruResetAfterBackward : public OpKernel {
 public:
  explicit GruResetAfterBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {  // d_hs, d_hT, saved, U
    Index T, B, H;
    if (!check_shapes(ctx, 3, 0, 1, 3, {1}, &T, &B, &H)) return;
    if (!check_saved(ctx, 2, 5, T, B, H)) return;
    Packed UT;
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(3), 0, 3 * H, true, &UT));
    const float *d_hs = in(ctx, 0), *s = in(ctx, 2);
    float* dXW = out(ctx, 0, TensorShape({T, B, 3 * H}));
    float* dHU = out(ctx, 1, TensorShape({T, B, 3 * H}));
    float* dh = out(ctx, 2, TensorShape({B, H}));  // δh flowing into step t from t+1; δh_0 at the end
    if (!ctx->status().ok()) return;
    std::copy_n(in(ctx, 1), B * H, dh);
    const Index plane = T * B * H;
    Team d(ctx->eigen_device<Device>(), max_tasks(B, H, H));
    for (Index t = T - 1; t >= 0; --t) {
      for_rows(d, B, H, [&](Index b) {
        const Index at = (t * B + b) * H;
        Row dh_t(dh + b * H, H);
        dh_t += ConstRow(d_hs + at, H);  // δh_t
        float *dxw = dXW + (t * B + b) * 3 * H, *dhu = dHU + (t * B + b) * 3 * H;
        Row(dxw, H) = dh_t * ConstRow(s + at, H);  // δa_z
        Row(dxw + H, H) = dh_t * ConstRow(s + plane + at, H);  // δa_r
        Row(dxw + 2 * H, H) = dh_t * ConstRow(s + 2 * plane + at, H);  // δa_ĥ
        std::copy_n(dxw, 2 * H, dhu);
        Row(dhu + 2 * H, H) = dh_t * ConstRow(s + 3 * plane + at, H);  // δ(h U_h + b^h_h)
        dh_t *= ConstRow(s + 4 * plane + at, H);  // δh_t ⊙ z_t, the direct path to h_{t-1}
      });
      matmul_into(d, dHU + t * B * 3 * H, 3 * H, UT, H, dh, H, B, true);  // δh_{t-1} = δh_t ⊙ z_t + δ(hU) U^T
    }
  }
};

// ---------------------------------------------------------------------------- GRU, reset_before
// ĥ = tanh(xw_h + (r ⊙ h_{t-1}) U_h): two matmuls a step. saved (5, T, B, H):
// ∂h/∂a_z, ∂h/∂a_ĥ, h_{t-1} σ'(r), z and r (fused.gru_reset_before_forward's).

template <bool kMasked>
class GruResetBeforeForward : public OpKernel {
 public:
  explicit GruResetBeforeForward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {  // xw, U, h0 (, mask)
    Index T, B, H;
    if (!check_shapes(ctx, 3, 0, 3, 1, {2}, &T, &B, &H)) return;
    if (kMasked && !check_mask(ctx, 3, T, B)) return;
    Packed U_zr, U_h;
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(1), 0, 2 * H, false, &U_zr));
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(1), 2 * H, H, false, &U_h));
    Tensor zr_buffer, rh_buffer;
    const float *xw = in(ctx, 0), *h0 = in(ctx, 2), *m = kMasked ? in(ctx, 3) : nullptr;
    float* hs = out(ctx, 0, TensorShape({T, B, H}));
    float* h_T = out(ctx, 1, TensorShape({B, H}));
    float* s = out(ctx, 2, TensorShape({5, T, B, H}));
    float* zr = temp(ctx, TensorShape({B, 2 * H}), &zr_buffer);
    float* rh = temp(ctx, TensorShape({B, H}), &rh_buffer);
    if (!ctx->status().ok()) return;
    const Index plane = T * B * H;
    Team d(ctx->eigen_device<Device>(), max_tasks(B, H, 2 * H));
    for (Index t = 0; t < T; ++t) {
      const float* h_prev = t == 0 ? h0 : hs + (t - 1) * B * H;
      float* h = hs + t * B * H;
      matmul_into(d, h_prev, H, U_zr, 2 * H, zr, 2 * H, B);  // h_{t-1} [U_z U_r]
      for_rows(d, B, H, [&](Index b) {
        float* a = zr + b * 2 * H;
        Row(a, 2 * H) += ConstRow(xw + (t * B + b) * 3 * H, 2 * H);
        sigmoid(a, 2 * H);  // z_t, r_t
        Row(rh + b * H, H) = ConstRow(a + H, H) * ConstRow(h_prev + b * H, H);  // r_t ⊙ h_{t-1}
      });
      matmul_into(d, rh, H, U_h, H, h, H, B);  // (r_t ⊙ h_{t-1}) U_h, into h_t's row for now
      for_rows(d, B, H, [&](Index b) {
        const Index at = (t * B + b) * H;
        if (kMasked && m[t * B + b] == 0.0f)  // h_t = h_{t-1}; saved 0 (r too), z = 1
          return masked_step(h_prev + b * H, h + b * H, s, 5, 3, plane, at, H);
        const ConstRow z(zr + b * 2 * H, H), r(zr + b * 2 * H + H, H), h_tm1(h_prev + b * H, H);
        Row h_t(h + b * H, H);
        Row n(s + plane + at, H);  // ĥ_t, in the slot of ∂h/∂a_ĥ until that is known
        n = (ConstRow(xw + (t * B + b) * 3 * H + 2 * H, H) + h_t).tanh();  // ĥ_t
        h_t = z * h_tm1 + (1.0f - z) * n;  // h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ ĥ_t
        Row(s + at, H) = (h_tm1 - n) * z * (1.0f - z);
        n = (1.0f - z) * (1.0f - n * n);
        Row(s + 2 * plane + at, H) = h_tm1 * r * (1.0f - r);
        Row(s + 3 * plane + at, H) = z;
        Row(s + 4 * plane + at, H) = r;
      });
    }
    std::copy_n(T == 0 ? h0 : hs + (T - 1) * B * H, B * H, h_T);
  }
};

class GruResetBeforeBackward : public OpKernel {
 public:
  explicit GruResetBeforeBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {  // d_hs, d_hT, saved, U
    Index T, B, H;
    if (!check_shapes(ctx, 3, 0, 1, 3, {1}, &T, &B, &H)) return;
    if (!check_saved(ctx, 2, 5, T, B, H)) return;
    Packed U_zr_T, U_h_T;
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(3), 0, 2 * H, true, &U_zr_T));
    OP_REQUIRES_OK(ctx, pack_block(ctx, ctx->input(3), 2 * H, H, true, &U_h_T));
    Tensor d_rh_buffer;
    const float *d_hs = in(ctx, 0), *s = in(ctx, 2);
    float* dZ = out(ctx, 0, TensorShape({T, B, 3 * H}));
    float* dh = out(ctx, 1, TensorShape({B, H}));  // δh flowing into step t from t+1; δh_0 at the end
    float* d_rh = temp(ctx, TensorShape({B, H}), &d_rh_buffer);
    if (!ctx->status().ok()) return;
    std::copy_n(in(ctx, 1), B * H, dh);
    const Index plane = T * B * H;
    Team d(ctx->eigen_device<Device>(), max_tasks(B, H, H));
    for (Index t = T - 1; t >= 0; --t) {
      float* dz = dZ + t * B * 3 * H;
      for_rows(d, B, H, [&](Index b) {
        const Index at = (t * B + b) * H;
        Row dh_t(dh + b * H, H);
        dh_t += ConstRow(d_hs + at, H);                                     // δh_t
        Row(dz + b * 3 * H, H) = dh_t * ConstRow(s + at, H);                // δa_z
        Row(dz + b * 3 * H + 2 * H, H) = dh_t * ConstRow(s + plane + at, H);  // δa_ĥ
      });
      matmul_into(d, dz + 2 * H, 3 * H, U_h_T, H, d_rh, H, B);  // δ(r ⊙ h_{t-1}) = δa_ĥ U_h^T
      for_rows(d, B, H, [&](Index b) {
        const Index at = (t * B + b) * H;
        const ConstRow d_rh_b(d_rh + b * H, H);
        Row(dz + b * 3 * H + H, H) = d_rh_b * ConstRow(s + 2 * plane + at, H);  // δa_r
        Row dh_t(dh + b * H, H);
        dh_t = dh_t * ConstRow(s + 3 * plane + at, H) + d_rh_b * ConstRow(s + 4 * plane + at, H);
      });
      matmul_into(d, dz, 3 * H, U_zr_T, H, dh, H, B, true);  // δh_{t-1} = δh_t ⊙ z + δ(rh) ⊙ r + [δa_z δa_r] U_zr^T
    }
  }
};

// ---------------------------------------------------------------------------- registration

// Output i has the shape of input j.
#define SAME(i, j) c->set_output(i, c->input(j))

// Output i is a state shaped like input j, its width merged with U's (input 1).
#define STATE(i, j)                                                \
  do {                                                             \
    ShapeHandle st;                                                \
    TF_RETURN_IF_ERROR(state_shape(c, j, 1, &st));                 \
    c->set_output(i, st);                                          \
  } while (0)

// The state shape (B, H): input `state`'s, its H merged with U's rows (input `u`).
tensorflow::Status state_shape(InferenceContext* c, int state, int u, ShapeHandle* out) {
  ShapeHandle st, weights;
  tensorflow::shape_inference::DimensionHandle units;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(state), 2, &st));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(u), 2, &weights));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(st, 1), c->Dim(weights, 0), &units));
  return c->ReplaceDim(st, 1, units, out);
}

// (T,) + the state shape, optionally with `planes` in front.
tensorflow::Status sequence_shape(InferenceContext* c, int sequence, int state, int u, int planes, ShapeHandle* out) {
  ShapeHandle seq, st;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(sequence), 3, &seq));
  TF_RETURN_IF_ERROR(state_shape(c, state, u, &st));
  TF_RETURN_IF_ERROR(c->Concatenate(c->Vector(c->Dim(seq, 0)), st, out));
  if (planes) TF_RETURN_IF_ERROR(c->Concatenate(c->Vector(planes), *out, out));
  return tensorflow::OkStatus();
}

// d_xw: the shape of input `sequence` (T, B, H) with the last dimension U's (G*H).
tensorflow::Status input_grad_shape(InferenceContext* c, int sequence, int u, ShapeHandle* out) {
  ShapeHandle seq, weights;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(sequence), 3, &seq));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(u), 2, &weights));
  return c->ReplaceDim(seq, 2, c->Dim(weights, 1), out);
}

// Each op and its ...Masked twin (the same inputs and a last one, mask (T, B))
// share a shape function.

tensorflow::Status simple_rnn_forward_shape(InferenceContext* c) {
  ShapeHandle hs;
  TF_RETURN_IF_ERROR(sequence_shape(c, 0, 2, 1, 0, &hs));
  c->set_output(0, hs);
  STATE(1, 2);
  return tensorflow::OkStatus();
}

tensorflow::Status simple_rnn_backward_shape(InferenceContext* c) {
  SAME(0, 0);
  SAME(1, 1);
  return tensorflow::OkStatus();
}

tensorflow::Status lstm_forward_shape(InferenceContext* c) {
  ShapeHandle hs, saved;
  TF_RETURN_IF_ERROR(sequence_shape(c, 0, 2, 1, 0, &hs));
  TF_RETURN_IF_ERROR(sequence_shape(c, 0, 2, 1, 6, &saved));
  c->set_output(0, hs);
  STATE(1, 2);
  STATE(2, 3);
  c->set_output(3, saved);
  return tensorflow::OkStatus();
}

tensorflow::Status lstm_backward_shape(InferenceContext* c) {
  ShapeHandle d_xw;
  TF_RETURN_IF_ERROR(input_grad_shape(c, 0, 4, &d_xw));
  c->set_output(0, d_xw);
  SAME(1, 1);
  SAME(2, 2);
  return tensorflow::OkStatus();
}

// GRU forward: the state is input `state` (3 with reset_after's bias, else 2).
template <int state>
tensorflow::Status gru_forward_shape(InferenceContext* c) {
  ShapeHandle hs, saved;
  TF_RETURN_IF_ERROR(sequence_shape(c, 0, state, 1, 0, &hs));
  TF_RETURN_IF_ERROR(sequence_shape(c, 0, state, 1, 5, &saved));
  c->set_output(0, hs);
  STATE(1, state);
  c->set_output(2, saved);
  return tensorflow::OkStatus();
}

REGISTER_OP("SeqkitSimpleRnnForward")
    .Input("xw: float").Input("u: float").Input("h0: float")
    .Output("hs: float").Output("h_last: float")
    .Attr("activation: {'tanh', 'relu', 'linear'}")
    .SetShapeFn(simple_rnn_forward_shape);

REGISTER_OP("SeqkitSimpleRnnForwardMasked")
    .Input("xw: float").Input("u: float").Input("h0: float").Input("mask: float")
    .Output("hs: float").Output("h_last: float")
    .Attr("activation: {'tanh', 'relu', 'linear'}")
    .SetShapeFn(simple_rnn_forward_shape);

REGISTER_OP("SeqkitSimpleRnnBackward")
    .Input("d_hs: float").Input("d_h_last: float").Input("hs: float").Input("u: float")
    .Output("d_xw: float").Output("d_h0: float")
    .Attr("activation: {'tanh', 'relu', 'linear'}")
    .SetShapeFn(simple_rnn_backward_shape);

REGISTER_OP("SeqkitSimpleRnnBackwardMasked")
    .Input("d_hs: float").Input("d_h_last: float").Input("hs: float").Input("u: float").Input("mask: float")
    .Output("d_xw: float").Output("d_h0: float")
    .Attr("activation: {'tanh', 'relu', 'linear'}")
    .SetShapeFn(simple_rnn_backward_shape);

REGISTER_OP("SeqkitLstmForward")
    .Input("xw: float").Input("u: float").Input("h0: float").Input("c0: float")
    .Output("hs: float").Output("h_last: float").Output("c_last: float").Output("saved: float")
    .SetShapeFn(lstm_forward_shape);

REGISTER_OP("SeqkitLstmForwardMasked")
    .Input("xw: float").Input("u: float").Input("h0: float").Input("c0: float").Input("mask: float")
    .Output("hs: float").Output("h_last: float").Output("c_last: float").Output("saved: float")
    .SetShapeFn(lstm_forward_shape);

REGISTER_OP("SeqkitLstmBackward")
    .Input("d_hs: float").Input("d_h_last: float").Input("d_c_last: float").Input("saved: float")
    .Input("u: float")
    .Output("d_xw: float").Output("d_h0: float").Output("d_c0: float")
    .SetShapeFn(lstm_backward_shape);

REGISTER_OP("SeqkitLstmBackwardMasked")
    .Input("d_hs: float").Input("d_h_last: float").Input("d_c_last: float").Input("saved: float")
    .Input("u: float").Input("mask: float")
    .Output("d_xw: float").Output("d_h0: float").Output("d_c0: float")
    .SetShapeFn(lstm_backward_shape);

REGISTER_OP("SeqkitGruResetAfterForward")
    .Input("xw: float").Input("u: float").Input("b: float").Input("h0: float")
    .Output("hs: float").Output("h_last: float").Output("saved: float")
    .SetShapeFn(gru_forward_shape<3>);

REGISTER_OP("SeqkitGruResetAfterForwardMasked")  // backward: SeqkitGruResetAfterBackward (the saved planes carry the mask)
    .Input("xw: float").Input("u: float").Input("b: float").Input("h0: float").Input("mask: float")
    .Output("hs: float").Output("h_last: float").Output("saved: float")
    .SetShapeFn(gru_forward_shape<3>);

REGISTER_OP("SeqkitGruResetAfterBackward")
    .Input("d_hs: float").Input("d_h_last: float").Input("saved: float").Input("u: float")
    .Output("d_xw: float").Output("d_hu: float").Output("d_h0: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle d_xw;
      TF_RETURN_IF_ERROR(input_grad_shape(c, 0, 3, &d_xw));
      c->set_output(0, d_xw);
      c->set_output(1, d_xw);
      SAME(2, 1);
      return tensorflow::OkStatus();
    });

REGISTER_OP("SeqkitGruResetBeforeForward")
    .Input("xw: float").Input("u: float").Input("h0: float")
    .Output("hs: float").Output("h_last: float").Output("saved: float")
    .SetShapeFn(gru_forward_shape<2>);

REGISTER_OP("SeqkitGruResetBeforeForwardMasked")  // backward: SeqkitGruResetBeforeBackward
    .Input("xw: float").Input("u: float").Input("h0: float").Input("mask: float")
    .Output("hs: float").Output("h_last: float").Output("saved: float")
    .SetShapeFn(gru_forward_shape<2>);

REGISTER_OP("SeqkitGruResetBeforeBackward")
    .Input("d_hs: float").Input("d_h_last: float").Input("saved: float").Input("u: float")
    .Output("d_xw: float").Output("d_h0: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle d_xw;
      TF_RETURN_IF_ERROR(input_grad_shape(c, 0, 3, &d_xw));
      c->set_output(0, d_xw);
      SAME(1, 1);
      return tensorflow::OkStatus();
    });

// ---------------------------------------------------------------------------- variant
// Which tile variant this library was built with, for benchmarks and logs:
// "isa=avx2 panel=16 tile_rows=6".

class KernelVariant : public OpKernel {
 public:
  explicit KernelVariant(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    Tensor* t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({}), &t));
    t->scalar<tensorflow::tstring>()() =
        std::string("isa=") + kIsa + " panel=" + std::to_string(kPanel) + " tile_rows=" + std::to_string(kTileRows);
  }
};

REGISTER_OP("SeqkitKernelVariant").Output("variant: string").SetShapeFn([](InferenceContext* c) {
  c->set_output(0, c->Scalar());
  return tensorflow::OkStatus();
});

#define CPU_KERNEL(name, cls) REGISTER_KERNEL_BUILDER(Name(name).Device(tensorflow::DEVICE_CPU), cls)
CPU_KERNEL("SeqkitSimpleRnnForward", SimpleRnnForward<false>);
CPU_KERNEL("SeqkitSimpleRnnForwardMasked", SimpleRnnForward<true>);
CPU_KERNEL("SeqkitSimpleRnnBackward", SimpleRnnBackward<false>);
CPU_KERNEL("SeqkitSimpleRnnBackwardMasked", SimpleRnnBackward<true>);
CPU_KERNEL("SeqkitLstmForward", LstmForward<false>);
CPU_KERNEL("SeqkitLstmForwardMasked", LstmForward<true>);
CPU_KERNEL("SeqkitLstmBackward", LstmBackward<false>);
CPU_KERNEL("SeqkitLstmBackwardMasked", LstmBackward<true>);
CPU_KERNEL("SeqkitGruResetAfterForward", GruResetAfterForward<false>);
CPU_KERNEL("SeqkitGruResetAfterForwardMasked", GruResetAfterForward<true>);
CPU_KERNEL("SeqkitGruResetAfterBackward", GruResetAfterBackward);
CPU_KERNEL("SeqkitGruResetBeforeForward", GruResetBeforeForward<false>);
CPU_KERNEL("SeqkitGruResetBeforeForwardMasked", GruResetBeforeForward<true>);
CPU_KERNEL("SeqkitGruResetBeforeBackward", GruResetBeforeBackward);
CPU_KERNEL("SeqkitKernelVariant", KernelVariant);

}  // namespace seqkit
