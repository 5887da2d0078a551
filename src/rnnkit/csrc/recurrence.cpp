// rnnkit's recurrence loops in C++: the whole time loop, forward and backward.
//
// The contract is python_loop.py's (src/rnnkit/layers/kernels/), line for line:
//   forward:  per step t, pre = xp[t] + h_{t-1} W_hh^T (+ h_{t-d} W_skip^T)
//             (+ g_{t-1} W_gate^T), one product each, then one fused elementwise pass
//             that writes the new state and saves the gate activations;
//   backward: per step, one fused elementwise pass (dpre from dh, dc and the saved
//             activations), then dh_{t-1} += dpre W_hh (and the skip and FGR products).
// Weight gradients are left to Python (one large product each, after the loop, with
// `mm` below).
//
// Buffers, N batch, H hidden, off = max(skip - 1, 0):
//   hbuf (off + 1 + L, N, H): history, initial h, then h after each step.
//   cs (L + 1, N, H): LSTM cell states. gs (L + 1, N, 3H): FGR's gates i, f, o.
//   acts (L, N, S*H): LSTM gates present (weight order); GRU r, z, n, hn; GRU-orig r, z, n.
// A sequence past its length keeps its state; its activations and gradients there are 0.
//
// Only the headers needed are included (no torch/extension.h, no pybind11): the op
// is registered with TORCH_LIBRARY and called as torch.ops.rnnkit_recurrence.*.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/set.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>


#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#define RNNKIT_MXCSR 1
#endif

namespace {

using at::Tensor;
using OptT = std::optional<Tensor>;

enum Kind : int64_t { LSTM = 0, GRU = 1, GRU_ORIGINAL = 2, RNN_TANH = 3, RNN_RELU = 4, ADDITIVE = 5 };
// LSTM flags, as in spec.py.
constexpr int64_t PEEP_I = 1, PEEP_F = 2, PEEP_O = 4, NO_INPUT_ACT = 8, NO_OUTPUT_ACT = 16,
                  COUPLED = 32, GATE_RECURRENCE = 64;

template <typename T>
using Vec = at::vec::Vectorized<T>;

// ---- the activations ---------------------------------------------------------------
//
// float: short polynomials (Cephes' expf for sigmoid; a rational function for tanh),
// within about 2 ulp, several times faster than at::vec's Sleef calls, which the gate
// math would otherwise spend most of its time in.
// double: at::vec (Sleef, 1 ulp).

#define RNNKIT_INLINE inline __attribute__((always_inline))

constexpr int64_t kLanes = Vec<float>::size();
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(float))));

RNNKIT_INLINE vf raw(const Vec<float>& v) {
  vf r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}
RNNKIT_INLINE Vec<float> wrap(const vf& r) {
  Vec<float> v;
  std::memcpy(&v, &r, sizeof r);
  return v;
}
inline vf splat(float a) { return vf{} + a; }

RNNKIT_INLINE vf exp_f(vf x) {
  x = x < splat(-87.0f) ? splat(-87.0f) : x;  // 2^-126 and 2^127 stay normal
  x = x > splat(88.0f) ? splat(88.0f) : x;
  const vi n = __builtin_convertvector(x * 1.44269504088896341f + 128.5f, vi) - 128;  // round(x / ln 2)
  const vf nf = __builtin_convertvector(n, vf);
  const vf r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf y = p * r * r + r + 1.0f;
  return y * reinterpret_cast<const vf&>(static_cast<const vi&>((n + 127) << 23));
}

RNNKIT_INLINE vf sigmoid_f(vf x) { return 1.0f / (1.0f + exp_f(-x)); }

RNNKIT_INLINE vf tanh_f(vf x) {
  // A rational function, odd numerator of degree 13 over even denominator of degree 6
  // (Eigen's float tanh), on x clamped where tanh rounds to ±1: one division and 11
  // multiply-adds, against an exp, a division and a series before.
  const float edge = 7.90531110763549805f;
  x = x < splat(-edge) ? splat(-edge) : x;
  x = x > splat(edge) ? splat(edge) : x;
  const vf x2 = x * x;
  vf p = splat(-2.76076847742355e-16f);
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 - 8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  vf q = splat(1.19825839466702e-06f);
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

template <typename T>
RNNKIT_INLINE Vec<T> sigmoid(const Vec<T>& x) {
  if constexpr (std::is_same_v<T, float>) return wrap(sigmoid_f(raw(x)));
  else return Vec<T>(T(1)) / (Vec<T>(T(1)) + x.neg().exp());
}

template <typename T>
RNNKIT_INLINE Vec<T> tanh(const Vec<T>& x) {
  if constexpr (std::is_same_v<T, float>) return wrap(tanh_f(raw(x)));
  else return x.tanh();
}

// ---- threads ------------------------------------------------------------------------
//
// A loop over time has a few thousand short steps, so its threads stay together for the
// whole loop (one OpenMP team, barriers between the phases of a step) rather than
// being forked and joined for every product and every elementwise pass. Each thread
// always takes the same column blocks of every product (they stay in its cache) and the
// same rows, or with fewer rows than threads the same column ranges, of every pass.
// Where the weights fit in one core's L2 cache the threads split the batch rows
// instead (`rows_apart`): each then owns its rows in every product and pass, and the
// loop needs no barriers at all.

struct Team {
  int id = 0, size = 1;
  // With rows apart (row1 >= 0) this thread owns the batch rows [row0, row1) of every
  // pass and product for the whole loop, and never waits for the others.
  int64_t row0 = 0, row1 = -1;
  bool rows() const { return row1 >= 0; }
  // The same thread with the rows [first, last) to itself.
  Team with_rows(int64_t first, int64_t last) const {
    Team t = *this;
    t.row0 = first;
    t.row1 = last;
    return t;
  }
  // The same thread with its share of N rows to itself.
  Team owning_rows(int64_t N) const {
    Team t = *this;
    std::tie(t.row0, t.row1) = share(N);
    return t;
  }
  void barrier() const {
#ifdef _OPENMP
    if (size > 1 && !rows()) {
#pragma omp barrier
    }
#endif
  }
  // This thread's share [first, last) of `count` items.
  std::pair<int64_t, int64_t> share(int64_t count) const {
    return {count * id / size, count * (id + 1) / size};
  }
};

// Each thread of a team computes as the caller does: the caller's flush-to-zero and
// denormals-are-zero bits (Python's flush_denormals) are set on the team's threads for
// the call, and their own put back after it.
struct FloatMode {
#ifdef RNNKIT_MXCSR
  static unsigned int get() { return _mm_getcsr(); }
  static void set(unsigned int csr) { _mm_setcsr(csr); }
#else
  static unsigned int get() { return 0; }
  static void set(unsigned int) {}
#endif
};

template <typename F>
void run_team(int size, const F& f) {
#ifdef _OPENMP
  if (size > 1) {
    const unsigned int callers = FloatMode::get();
#pragma omp parallel num_threads(size)
    {
      const unsigned int own = FloatMode::get();
      FloatMode::set(callers);
      const Team tm{omp_get_thread_num(), omp_get_num_threads()};
      f(tm);
      FloatMode::set(own);
    }
    return;
  }
#endif
  f(Team{});
}

// A loop with rows apart, kept balanced: step(tm, t) runs step t for the rows of tm.
// Each thread starts with its share of the rows. One that has run all its steps takes
// part of the rows of the thread with the most work left: that thread gives up its
// last register blocks of rows from its next step on, and the taker starts on them as
// soon as their current step is done. A machine that slows one core (another tenant on
// it) then slows the loop by the average instead of by the slower core: measured here,
// the two threads of a call finished up to 40% apart with fixed halves.
struct RowShare {
  std::mutex m;
  int64_t lo = 0, hi = 0;  // rows
  int64_t cur = -1;        // the step being run (or last run) on [lo, hi)
  std::atomic<int64_t> done{-1};  // the last step finished on every row of [lo, hi)
};

// Rows handed from one thread to another since the count was last read (for tests and
// measurements), and a delay after every step of thread 1 (RNNKIT_SLOW_THREAD_US, for
// tests: it makes the hand-over happen on any machine).
std::atomic<int64_t> rows_handed_over{0};

template <typename Step>
void run_rows_balanced(int size, int64_t N, int64_t L, int64_t block, const Step& step) {
  const char* slow_env = std::getenv("RNNKIT_SLOW_THREAD_US");
  const int64_t slow_us = slow_env != nullptr ? std::atoll(slow_env) : 0;
  std::vector<RowShare> shares(size);
  for (int i = 0; i < size; ++i) {
    shares[i].lo = N * i / size;
    shares[i].hi = N * (i + 1) / size;
  }
  run_team(size, [&](const Team& team) {
    RowShare& mine = shares[team.id];
    for (;;) {
      for (int64_t t = mine.cur + 1; t < L; ++t) {  // the rows held now, to the end
        int64_t lo, hi;
        {
          std::lock_guard<std::mutex> g(mine.m);
          lo = mine.lo;
          hi = mine.hi;
          mine.cur = t;
        }
        if (slow_us > 0 && team.id == 1) usleep(useconds_t(slow_us));  // inside the step: taken rows wait
        if (lo < hi) step(team.with_rows(lo, hi), t);
        mine.done.store(t, std::memory_order_release);
      }
      // Take half the blocks of rows (rounded down) of the share with the most work left.
      int victim = -1;
      int64_t most = 0;
      for (int i = 0; i < size; ++i) {
        if (i == team.id) continue;
        std::lock_guard<std::mutex> g(shares[i].m);
        const int64_t left = (shares[i].hi - shares[i].lo) * (L - 1 - shares[i].cur);
        if ((shares[i].hi - shares[i].lo) >= 2 * block && L - 1 - shares[i].cur >= 2 && left > most) {
          most = left;
          victim = i;
        }
      }
      if (victim < 0) return;
      RowShare& v = shares[victim];
      int64_t lo, hi, from;
      {
        std::lock_guard<std::mutex> g(v.m);
        const int64_t blocks = (v.hi - v.lo + block - 1) / block;
        if (blocks < 2 || L - 1 - v.cur < 2) continue;  // it moved on meanwhile: look again
        lo = v.lo + (blocks - blocks / 2) * block;
        hi = v.hi;
        from = v.cur;
        v.hi = lo;
      }
      rows_handed_over.fetch_add(hi - lo, std::memory_order_relaxed);
      while (v.done.load(std::memory_order_acquire) < from) {  // the victim ends step `from` on them
      }
      std::lock_guard<std::mutex> g(mine.m);
      mine.lo = lo;
      mine.hi = hi;
      mine.cur = from;
      mine.done.store(from, std::memory_order_release);
    }
  });
}

// The steps i = 0 .. L-1 of a loop: step(tm, i) on every thread, with rows apart by
// run_rows_balanced (blocks of `block` rows), else each thread on its units, in order.
template <typename Step>
void run_loop(int threads, bool by_rows, int64_t N, int64_t L, int64_t block, const Step& step) {
  if (by_rows) return run_rows_balanced(threads, N, L, block, step);
  run_team(threads, [&](const Team& tm) {
    for (int64_t i = 0; i < L; ++i) step(tm, i);
  });
}

// What every elementwise pass knows.
struct Shape {
  int64_t N, H;
  const int64_t* lengths;  // nullptr: every step of every sequence is real
  bool active(int64_t t, int64_t n) const { return lengths == nullptr || t < lengths[n]; }
};

// Thread tm's part of an elementwise pass over N rows of H columns: f(n, j0, j1) for
// its rows, or, with fewer rows than threads, for its column range (whole vectors).
template <typename T, typename F>
void for_units(const Team& tm, int64_t N, int64_t H, const F& f) {
  if (tm.rows()) {
    for (int64_t n = tm.row0; n < tm.row1; ++n) f(n, int64_t(0), H);
    return;
  }
  if (N >= tm.size) {
    const auto [first, last] = tm.share(N);
    for (int64_t n = first; n < last; ++n) f(n, int64_t(0), H);
    return;
  }
  constexpr int64_t VS = Vec<T>::size();
  const auto [first, last] = tm.share((H + VS - 1) / VS);
  if (first == last) return;
  for (int64_t n = 0; n < N; ++n) f(n, first * VS, std::min(H, last * VS));
}

template <typename T>
inline void copy_cols(T* dst, const T* src, int64_t j0, int64_t j1) {
  std::copy(src + j0, src + j1, dst + j0);
}
template <typename T>
inline void zero_cols(T* dst, int64_t j0, int64_t j1) {
  std::fill(dst + j0, dst + j1, T(0));
}
// The same columns of each of `blocks` H-wide blocks of a row.
template <typename T>
inline void zero_blocks(T* row, int64_t blocks, int64_t H, int64_t j0, int64_t j1) {
  for (int64_t b = 0; b < blocks; ++b) zero_cols(row + b * H, j0, j1);
}

// ---- the recurrent products ----------------------------------------------------------
//
// out (N, C) = init + x (N, R) · B (R, C), with B the same matrix at every step.
// B is packed once per call into column blocks of four vector registers (R × kBlock
// each, contiguous); a register-blocked kernel then runs kRows rows of x against one
// block at a time, and each thread always takes the same blocks, which stay in its
// cache from step to step. Where at::vec has no SIMD here (DEFAULT) the products go
// to at::addmm instead, except for a row or two, where the loop still saves the
// dispatch overhead.

#if defined(CPU_CAPABILITY_AVX512)
constexpr int kRows = 6;  // 6 rows × 4 vectors = 24 of the 32 vector registers
constexpr bool kOwnProducts = true;
#elif defined(CPU_CAPABILITY_AVX2)
constexpr int kRows = 2;  // 2 × 4 = 8 of 16
constexpr bool kOwnProducts = true;
#else
constexpr int kRows = 1;
constexpr bool kOwnProducts = false;
#endif
constexpr int64_t kSmallRows = 2;

template <typename T>
constexpr int64_t kBlock = 4 * Vec<T>::size();  // columns per block

// ---- buffers kept between calls ----------------------------------------------------------
//
// A training step allocates the same large buffers every time: the saved gate
// activations and states, the input projection, their gradients (at the speed
// benchmark's shape B, 26–105 MB each). Buffers that large come from mmap and go back
// to the system when freed, so every step paid the page faults and the zeroing of
// fresh pages again: 20% of a GRU training step at B. The buffers are therefore kept
// and handed out again once nothing else uses their memory (the pool's own reference
// is the storage's last). A handed-out tensor shares the buffer's storage without
// being a view of it. RNNKIT_WORKSPACE_MB (default 1024, 0: off) bounds what is kept;
// idle buffers are released least recently used first, and requests beyond the bound
// get plain new tensors. An idle buffer not asked for again within 256 requests (a
// batch shape that stopped coming; a training step makes about ten) is released.

// An environment variable in megabytes, as bytes (unset or empty: the default).
inline int64_t env_megabytes(const char* name, int64_t default_mb) {
  const char* e = std::getenv(name);
  return (e != nullptr && *e != '\0' ? std::atoll(e) : default_mb) << 20;
}

class Workspace {
 public:
  static constexpr int64_t kMinBytes = int64_t(1) << 20;  // smaller ones come from the heap anyway
  static constexpr uint64_t kStale = 256;  // requests without reuse after which an idle buffer goes

  // An uninitialised contiguous tensor of `sizes`.
  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
    int64_t numel = 1;
    for (const int64_t n : sizes) numel *= n;
    const int64_t bytes = numel * int64_t(opts.dtype().itemsize());
    if (bytes < kMinBytes || budget() <= 0 || opts.device().type() != c10::DeviceType::CPU)
      return at::empty(sizes, opts);
    const std::lock_guard<std::mutex> lock(mutex_);
    ++clock_;
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [](const Entry& e) { return moved(e); }),
                   entries_.end());
    release_if([&](const Entry& e) { return e.used + kStale < clock_; });  // a shape that stopped coming
    for (Entry& e : entries_)
      if (e.base.dtype() == opts.dtype() && e.base.numel() == numel && idle(e)) {
        e.used = clock_;
        return share(e.base, sizes);
      }
    while (held_ + bytes > budget()) {  // make room: the least recently used idle buffer goes
      auto lru = entries_.end();
      for (auto it = entries_.begin(); it != entries_.end(); ++it)
        if (idle(*it) && (lru == entries_.end() || it->used < lru->used)) lru = it;
      if (lru == entries_.end()) return at::empty(sizes, opts);  // all in use: not kept
      held_ -= lru->base.nbytes();
      entries_.erase(lru);
    }
    Tensor base = at::empty({numel}, opts);
    entries_.push_back({base, clock_, base.storage().data()});
    held_ += bytes;
    return share(base, sizes);
  }

  // Bytes held, in use or idle, after releasing the idle buffers when `release`.
  int64_t held(bool release) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (release) release_if([](const Entry&) { return true; });
    return held_;
  }

 private:
  struct Entry {
    Tensor base;  // 1-D, the buffer's only reference when idle
    uint64_t used;
    const void* memory;  // where the buffer was allocated
  };
  // Nothing else references the storage, and its memory is still ours: share_memory_()
  // (a tensor sent to another process) or a resize moves it, and another process may
  // still read it, so such a buffer is never handed out again (release_if drops it).
  static bool idle(const Entry& e) { return e.base.storage().use_count() == 1 && !moved(e); }
  static bool moved(const Entry& e) { return e.base.storage().data() != e.memory; }
  template <typename F>
  void release_if(const F& f) {  // the idle entries for which f holds
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return idle(e) && f(e); }),
                   entries_.end());
    held_ = 0;
    for (const Entry& e : entries_) held_ += e.base.nbytes();
  }
  static Tensor share(const Tensor& base, at::IntArrayRef sizes) {
    std::vector<int64_t> strides(sizes.size());
    int64_t stride = 1;
    for (int64_t i = int64_t(sizes.size()) - 1; i >= 0; --i) {
      strides[i] = stride;
      stride *= std::max<int64_t>(sizes[i], 1);
    }
    Tensor t = at::empty({0}, base.options());
    t.set_(base.storage(), 0, sizes, strides);
    return t;
  }
  static int64_t budget() {
    static const int64_t bytes = env_megabytes("RNNKIT_WORKSPACE_MB", 1024);
    return bytes;
  }
  std::mutex mutex_;
  std::vector<Entry> entries_;
  int64_t held_ = 0;
  uint64_t clock_ = 0;
};

Workspace& workspace() {
  static Workspace* pool = new Workspace();  // never destroyed: tensors outlive static teardown
  return *pool;
}

// Packs B (R, C), any strides, into blocks of NV vectors: packed[blk][r][v·VS + l] =
// B[r][col(blk, v) + l] for l < count(blk, v), 0 beyond; cols(blk, v) gives that pair.
// The weights arrive as transposed views (B[r][c] = W[c][r], unit stride along r) or
// as W itself (unit stride along c); either way the inner loop reads contiguously.
// Run per call, so it must cost little next to a short sequence: blocks in parallel,
// no intermediate copy.
template <typename T, typename Cols>
Tensor pack_blocks(const Tensor& B, int64_t nblocks, int64_t NV, const Cols& cols) {
  constexpr int64_t VS = Vec<T>::size();
  const int64_t R = B.size(0), sr = B.stride(0), sc = B.stride(1), W = NV * VS;
  Tensor packed = at::empty({nblocks, R, W}, B.options());
  const T* src = B.data_ptr<T>();
  T* dst = packed.data_ptr<T>();
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      T* out = dst + blk * R * W;
      for (int64_t v = 0; v < NV; ++v) {
        const auto [c0, count] = cols(blk, v);
        const int64_t k = std::clamp<int64_t>(count, 0, VS);
        if (sc == 1 || sr != 1) {  // rows of B: VS values at a time
          for (int64_t r = 0; r < R; ++r) {
            T* o = out + r * W + v * VS;
            const T* in = src + r * sr + c0 * sc;
            for (int64_t l = 0; l < k; ++l) o[l] = in[l * sc];
            for (int64_t l = k; l < VS; ++l) o[l] = T(0);
          }
        } else {  // columns of B (rows of W): contiguous along r
          for (int64_t l = 0; l < VS; ++l) {
            T* o = out + v * VS + l;
            if (l < k) {
              const T* in = src + (c0 + l) * sc;
              for (int64_t r = 0; r < R; ++r) o[r * W] = in[r];
            } else {
              for (int64_t r = 0; r < R; ++r) o[r * W] = T(0);
            }
          }
        }
      }
    }
  });
  return packed;
}

template <typename T>
struct Operand {
  Tensor mat;     // (R, C), perhaps a transposed view: what at::addmm reads
  Tensor packed;  // (blocks, R, kBlock), zero-padded: what the kernel reads
  const T* data = nullptr;
  int64_t R = 0, C = 0;
  Operand() = default;
  Operand(const Tensor& m, int64_t rows) : mat(m), R(m.size(0)), C(m.size(1)) {
    if (!(kOwnProducts || rows <= kSmallRows)) return;
    constexpr int64_t VS = Vec<T>::size();
    const int64_t nblocks = (C + kBlock<T> - 1) / kBlock<T>;
    const int64_t C_ = C;
    packed = pack_blocks<T>(m, nblocks, kBlock<T> / VS, [&](int64_t blk, int64_t v) {
      const int64_t c0 = blk * kBlock<T> + v * VS;
      return std::pair<int64_t, int64_t>{c0, C_ - c0};
    });
    data = packed.data_ptr<T>();
  }
};

// Bytes of the packed operands (0 for those not packed).
template <typename T>
int64_t packed_bytes(std::initializer_list<const Operand<T>*> ops) {
  int64_t bytes = 0;
  for (const Operand<T>* o : ops)
    if (o->data != nullptr) bytes += o->packed.numel() * int64_t(sizeof(T));
  return bytes;
}

// MR rows of x against one packed block: out[m, :width] = init + x[m] · block.
// GCC vector types (one vector register each) rather than at::vec: an array of them
// stays in registers, an array of at::vec::Vectorized did not.
template <typename T, int MR>
inline void block_kernel(const T* x, int64_t sxm, int64_t sxr, const T* b, int64_t R, T* out, int64_t ldo,
                         const T* init, int64_t ldi, int64_t width) {
  constexpr int64_t VS = Vec<T>::size();
  typedef T vec_t __attribute__((vector_size(VS * sizeof(T))));
  vec_t acc[MR][4] = {};
  const vec_t* bv = reinterpret_cast<const vec_t*>(b);  // packed blocks are 64-byte aligned
  for (int64_t r = 0; r < R; ++r, bv += 4) {
    const vec_t b0 = bv[0], b1 = bv[1], b2 = bv[2], b3 = bv[3];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const T xm = x[m * sxm + r * sxr];
      acc[m][0] += xm * b0;
      acc[m][1] += xm * b1;
      acc[m][2] += xm * b2;
      acc[m][3] += xm * b3;
    }
  }
  alignas(64) T tmp[4 * VS];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    std::memcpy(tmp, &acc[m][0], sizeof(tmp));
    T* o = out + m * ldo;
    const T* in = init == nullptr ? nullptr : init + m * ldi;
    if (in != nullptr) {
      for (int64_t c = 0; c < width; ++c) o[c] = in[c] + tmp[c];
    } else {
      for (int64_t c = 0; c < width; ++c) o[c] = tmp[c];
    }
  }
}

// Rows n0..n1 in groups of at most MR rows, as even as possible: 32 rows of kRows = 6
// run as 6 6 5 5 5 5, not 6 6 6 6 6 2, where the group of two ran its multiply-adds
// at about half the rate of the others.
template <int MR, typename F>
inline void row_groups(int64_t n0, int64_t n1, const F& f) {
  const int64_t rows = n1 - n0;
  if (rows <= 0) return;
  const int64_t groups = (rows + MR - 1) / MR, base = rows / groups, extra = rows % groups;
  for (int64_t g = 0, n = n0; g < groups; ++g) {
    const int64_t r = base + (g < extra ? 1 : 0);
    f(n, r);
    n += r;
  }
}

template <typename T, int MR>
inline void block_rows(int64_t rows, const T* x, int64_t sxm, int64_t sxr, const T* b, int64_t R, T* out,
                       int64_t ldo, const T* init, int64_t ldi, int64_t width) {
  if constexpr (MR > 1) {
    if (rows < MR) return block_rows<T, MR - 1>(rows, x, sxm, sxr, b, R, out, ldo, init, ldi, width);
  }
  block_kernel<T, MR>(x, sxm, sxr, b, R, out, ldo, init, ldi, width);
}

// Thread tm's column blocks of out = init + x · B (init == nullptr: out = x · B;
// init == out: out += x · B). Without a packed B (DEFAULT capability, more than a few
// rows) the team has one thread and at::addmm does the product.
template <typename T>
void product(const Team& tm, T* out, int64_t ldo, const T* init, int64_t ldi, const T* x, int64_t ldx,
             int64_t N, const Operand<T>& B, const at::TensorOptions& opts) {
  constexpr int64_t BLOCK = kBlock<T>;
  if (B.data != nullptr) {
    const int64_t R = B.R, C = B.C, nblocks = (C + BLOCK - 1) / BLOCK;
    const auto [first, last] = tm.rows() ? std::pair<int64_t, int64_t>{0, nblocks} : tm.share(nblocks);
    const int64_t n0 = tm.rows() ? tm.row0 : 0, n1 = tm.rows() ? tm.row1 : N;
    for (int64_t blk = first; blk < last; ++blk) {
      const int64_t c0 = blk * BLOCK, width = std::min(BLOCK, C - c0);
      const T* b = B.data + blk * R * BLOCK;
      row_groups<kRows>(n0, n1, [&](int64_t n, int64_t rows) {
        block_rows<T, kRows>(rows, x + n * ldx, ldx, 1, b, R, out + n * ldo + c0, ldo,
                             init == nullptr ? nullptr : init + n * ldi + c0, ldi, width);
      });
    }
    return;
  }
  Tensor o = at::from_blob(out, {N, B.C}, {ldo, 1}, opts);
  const Tensor xv = at::from_blob(const_cast<T*>(x), {N, B.R}, {ldx, 1}, opts);
  if (init == nullptr) at::mm_out(o, xv, B.mat);
  else if (init == out) o.addmm_(xv, B.mat);
  else at::addmm_out(o, at::from_blob(const_cast<T*>(init), {N, B.C}, {ldi, 1}, opts), xv, B.mat);
}

// Threads for a loop whose steps do `macs` multiply-adds in their products.
inline int team_size(bool own, int64_t macs) {
  return own && macs >= 65536 ? std::max(1, at::get_num_threads()) : 1;
}

// ---- large products: C = bias + A · B ---------------------------------------------------
//
// The input projection and the weight gradients, one product each over all L·N rows.
// Blocked like BLIS: B is packed KC rows at a time into column blocks, each thread
// takes MC rows of A (read in place, by rows or by columns) and runs the same register
// kernel over every column block. (On AMD CPUs MKL runs its AVX2 kernels; this one uses
// the vector width torch itself uses.)

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t sam, int64_t sak, const T* B, int64_t sbk,
          int64_t sbn, const T* bias, T* C, int64_t ldc, const at::TensorOptions& opts) {
  constexpr int64_t BLOCK = kBlock<T>, MR = kRows, KC = 256, MC = 48 * kRows;
  const int64_t nblocks = (N + BLOCK - 1) / BLOCK;
  Tensor bpack = at::empty({nblocks, std::min(KC, std::max<int64_t>(K, 1)), BLOCK}, opts);
  T* bp = bpack.data_ptr<T>();
  const int64_t mchunks = (M + MC - 1) / MC;
  if (K == 0) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = bias != nullptr ? bias[n] : T(0);
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    at::parallel_for(0, nblocks, 1, [&](int64_t first, int64_t last) {  // pack B[k0:k0+kc, :]
      for (int64_t blk = first; blk < last; ++blk) {
        T* dst = bp + blk * kc * BLOCK;
        const int64_t c0 = blk * BLOCK, width = std::min(BLOCK, N - c0);
        for (int64_t k = 0; k < kc; ++k) {
          const T* src = B + (k0 + k) * sbk + c0 * sbn;
          T* row = dst + k * BLOCK;
          for (int64_t j = 0; j < width; ++j) row[j] = src[j * sbn];
          for (int64_t j = width; j < BLOCK; ++j) row[j] = T(0);
        }
      }
    });
    const int64_t grain = M * N * kc >= 65536 ? 1 : mchunks;
    at::parallel_for(0, mchunks, grain, [&](int64_t first, int64_t last) {
      for (int64_t chunk = first; chunk < last; ++chunk) {
        const int64_t m0 = chunk * MC, mc = std::min(MC, M - m0);
        for (int64_t blk = 0; blk < nblocks; ++blk) {
          const int64_t c0 = blk * BLOCK, width = std::min(BLOCK, N - c0);
          for (int64_t p = 0; p * MR < mc; ++p) {
            const int64_t rows = std::min<int64_t>(MR, mc - p * MR), m = m0 + p * MR;
            T* out = C + m * ldc + c0;
            // the first panel starts from zero, later ones add to C
            const T* init = k0 > 0 ? out : nullptr;
            block_rows<T, kRows>(rows, A + m * sam + k0 * sak, sam, sak, bp + blk * kc * BLOCK, kc, out, ldc,
                                 init, ldc, width);
            if (k0 == 0 && bias != nullptr) {
              for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < width; ++j) out[i * ldc + j] += bias[c0 + j];
            }
          }
        }
      }
    });
  }
}

// a (M, K) · b (K, N) (+ bias (N,)), any strides; a new contiguous (M, N) from the
// workspace. blas: by at::mm / at::addmm (the BLAS torch was built with), else by `gemm`.
Tensor mm_op(const Tensor& a, const Tensor& b, const OptT& bias, bool blas) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "rnnkit mm: shapes ", a.sizes(), " ", b.sizes());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "rnnkit mm: dtypes differ");
  Tensor out = workspace().empty({a.size(0), b.size(1)}, a.options());
  if (blas) {
    if (bias.has_value()) at::addmm_out(out, *bias, a, b);
    else at::mm_out(out, a, b);
    return out;
  }
  const Tensor bias_c = bias.has_value() ? bias->contiguous() : Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rnnkit_mm", [&] {
    gemm<scalar_t>(a.size(0), b.size(1), a.size(1), a.data_ptr<scalar_t>(), a.stride(0), a.stride(1),
                   b.data_ptr<scalar_t>(), b.stride(0), b.stride(1),
                   bias_c.defined() ? bias_c.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(),
                   out.stride(0), a.options());
  });
  return out;
}

// ---- forward elementwise passes -------------------------------------------------------
//
// Each pass covers the columns [j0, j1) of one row (j0 a multiple of the vector width).

struct LstmLayout {
  int64_t bi, bf, bg, bo;  // block index of each gate in pre / acts, -1 when absent
  int64_t flags;
};

// LSTM, one vector of units j..j+k: the gates' pre-activations p[block] -> act (G·H
// row; nullptr: not kept), c_new, h_new, and FGR's gates g_new (3H).
template <typename T>
RNNKIT_INLINE void lstm_cell(const LstmLayout& lay, int64_t H, int64_t j, int64_t k, const Vec<T>* p, const T* c,
                      const T* peep, T* act, T* c_new, T* h_new, T* g_new) {
  using V = Vec<T>;
  const int64_t flags = lay.flags;
  const V one(T(1));
  const V cv = V::loadu(c + j, k);
  V i = one, f = one, o = one;
  if (lay.bi >= 0) {
    V a = p[lay.bi];
    if (flags & PEEP_I) a = a + V::loadu(peep + j, k) * cv;
    i = sigmoid(a);
    if (act != nullptr) i.store(act + lay.bi * H + j, k);
  }
  if (lay.bf >= 0) {
    V a = p[lay.bf];
    if (flags & PEEP_F) a = a + V::loadu(peep + H + j, k) * cv;
    f = sigmoid(a);
    if (act != nullptr) f.store(act + lay.bf * H + j, k);
  } else if (flags & COUPLED) {
    f = one - i;
  }
  V g = p[lay.bg];
  if (!(flags & NO_INPUT_ACT)) g = tanh(g);
  if (act != nullptr) g.store(act + lay.bg * H + j, k);
  const V cn = f * cv + i * g;
  cn.store(c_new + j, k);
  if (lay.bo >= 0) {
    V a = p[lay.bo];
    if (flags & PEEP_O) a = a + V::loadu(peep + 2 * H + j, k) * cn;
    o = sigmoid(a);
    if (act != nullptr) o.store(act + lay.bo * H + j, k);
  }
  const V y = (flags & NO_OUTPUT_ACT) ? cn : tanh(cn);
  (o * y).store(h_new + j, k);
  if (g_new != nullptr) {  // FGR: all four gates exist
    i.store(g_new + j, k);
    f.store(g_new + H + j, k);
    o.store(g_new + 2 * H + j, k);
  }
}

template <typename T>
void lstm_forward(const LstmLayout& lay, int64_t H, int64_t G, int64_t j0, int64_t j1, const T* pre, const T* c,
                  const T* peep, T* act, T* c_new, T* h_new, T* g_new) {
  using V = Vec<T>;
  V p[4];
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    for (int64_t b = 0; b < G; ++b) p[b] = V::loadu(pre + b * H + j, k);
    lstm_cell<T>(lay, H, j, k, p, c, peep, act, c_new, h_new, g_new);
  }
}

// GRU standard, one vector of units: r, z, hn = W_nh h + b_nh from the product, x_n
// the input part of n. act: r, z, n, hn.
template <typename T>
RNNKIT_INLINE void gru_cell(int64_t H, int64_t j, int64_t k, const Vec<T>& r, const Vec<T>& z, const Vec<T>& hn,
                     const Vec<T>& x_n, const T* h, T* act, T* h_new) {
  using V = Vec<T>;
  const V n = tanh(x_n + r * hn);
  const V hp = V::loadu(h + j, k);
  r.store(act + j, k);
  z.store(act + H + j, k);
  n.store(act + 2 * H + j, k);
  hn.store(act + 3 * H + j, k);
  (n + z * (hp - n)).store(h_new + j, k);
}

// GRU standard: xs (3H) input part, rec (3H) = h W_hh^T; b (H) = b_nh. act: r, z, n, hn.
template <typename T>
void gru_forward(int64_t H, int64_t j0, int64_t j1, const T* xs, const T* rec, const T* b, const T* h, T* act,
                 T* h_new) {
  using V = Vec<T>;
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V r = sigmoid(V::loadu(xs + j, k) + V::loadu(rec + j, k));
    const V z = sigmoid(V::loadu(xs + H + j, k) + V::loadu(rec + H + j, k));
    const V hn = V::loadu(rec + 2 * H + j, k) + V::loadu(b + j, k);
    const V n = tanh(V::loadu(xs + 2 * H + j, k) + r * hn);
    const V hp = V::loadu(h + j, k);
    r.store(act + j, k);
    z.store(act + H + j, k);
    n.store(act + 2 * H + j, k);
    hn.store(act + 3 * H + j, k);
    (n + z * (hp - n)).store(h_new + j, k);
  }
}

// GRU original, first half: pre (r, z blocks) -> r, z into act; rh = r * h.
template <typename T>
void gru_orig_forward_rz(int64_t H, int64_t j0, int64_t j1, const T* pre, const T* h, T* act, T* rh) {
  using V = Vec<T>;
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V r = sigmoid(V::loadu(pre + j, k));
    r.store(act + j, k);
    sigmoid(V::loadu(pre + H + j, k)).store(act + H + j, k);
    (r * V::loadu(h + j, k)).store(rh + j, k);
  }
}

// GRU original, second half: pre_n (H) = x_n + W_nh (r h) -> n, h_new.
template <typename T>
void gru_orig_forward_n(int64_t H, int64_t j0, int64_t j1, const T* pre_n, const T* h, T* act, T* h_new) {
  using V = Vec<T>;
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V n = tanh(V::loadu(pre_n + j, k));
    const V z = V::loadu(act + H + j, k);
    n.store(act + 2 * H + j, k);
    (n + z * (V::loadu(h + j, k) - n)).store(h_new + j, k);
  }
}

template <typename T>
void simple_forward(int64_t kind, int64_t j0, int64_t j1, const T* pre, const T* h, T* h_new) {
  using V = Vec<T>;
  const V zero(T(0));
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V p = V::loadu(pre + j, k);
    V out;
    if (kind == RNN_TANH) out = tanh(p);
    else if (kind == RNN_RELU) out = at::vec::maximum(p, zero);
    else out = V::loadu(h + j, k) + p;  // additive
    out.store(h_new + j, k);
  }
}

// ---- the fused forward step ---------------------------------------------------------------
//
// LSTM, GRU and Elman steps run their gate math inside the product's epilogue, on the
// accumulators, as oneDNN and haste do: the recurrent weights are packed with the
// gates interleaved, so that one block of NV vector registers holds the pre-activations
// of every gate of the same VS hidden units (LSTM: i, f, g, o of units u..u+VS; GRU
// r, z, n; Elman: NV·VS units of its one gate). Each thread owns a set of unit blocks;
// one barrier per step (the next step's product needs all of h).

template <typename T>
struct Fused {
  static constexpr int64_t VS = Vec<T>::size();
  Tensor packed;           // (blocks, R, NV·VS)
  const T* data = nullptr;
  int64_t R = 0, nblocks = 0;
  // B (R, G·H) in gate-major columns; interleaved: vector v of a block = gate v.
  Fused(const Tensor& B, int64_t H, int64_t NV, bool interleaved) : R(B.size(0)) {
    const int64_t UB = interleaved ? VS : NV * VS;  // hidden units per block
    nblocks = (H + UB - 1) / UB;
    packed = pack_blocks<T>(B, nblocks, NV, [&](int64_t blk, int64_t v) {
      const int64_t unit = blk * UB + (interleaved ? 0 : v * VS);  // the vector's first unit
      return std::pair<int64_t, int64_t>{(interleaved ? v * H : 0) + unit, H - unit};
    });
    data = packed.data_ptr<T>();
  }
  Fused(const Tensor& p, int64_t rows, int64_t blocks) : packed(p), data(p.data_ptr<T>()), R(rows), nblocks(blocks) {}
  Fused() = default;
};

// ---- packed weights kept between calls --------------------------------------------------
//
// Without a backward, the same weights usually come back call after call (evaluation,
// a model serving requests), and packing them took 5–10% of a call at the benchmark's
// shape A. The packed form of a weight is therefore kept, matched by the weight tensor
// itself (held weakly: the entry of a freed tensor is dropped and never matches another
// at the same address), its data pointer and version counter (bumped by in-place
// changes: optimizer steps, copy_, load_state_dict), and its values, compared byte for
// byte with a copy kept beside the packed form: a write through `.data` changes none of
// the rest. The comparison reads the weight once, a fraction of packing's cost.
// RNNKIT_PACK_CACHE_MB (default 256, 0: off) bounds what is kept; the least recently
// used entries go first.

class PackCache {
 public:
  template <typename T>
  Fused<T> get(const Tensor& w, int64_t H, int64_t NV, bool interleaved) {
    if (budget() <= 0 || w.is_inference()) return Fused<T>(w.t(), H, NV, interleaved);
    const Key key{w.unsafeGetTensorImpl(), w.data_ptr(), w._version(), H, NV, interleaved, w.scalar_type()};
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      drop_freed();
      for (Entry& e : entries_)
        if (e.key == key && same_values(w, e.values)) {
          e.used = ++clock_;
          return Fused<T>(e.packed, e.R, e.nblocks);
        }
    }
    Fused<T> f(w.t(), H, NV, interleaved);
    const std::lock_guard<std::mutex> lock(mutex_);
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                  [&](const Entry& e) { return e.key.impl == key.impl; }),  // older versions
                   entries_.end());
    entries_.push_back({key, WeakImpl(w.getIntrusivePtr()), w.contiguous().clone(), f.packed, f.R, f.nblocks,
                        ++clock_});
    int64_t bytes = 0;
    for (const Entry& e : entries_) bytes += e.packed.nbytes() + e.values.nbytes();
    while (bytes > budget() && !entries_.empty()) {
      auto lru = std::min_element(entries_.begin(), entries_.end(),
                                  [](const Entry& a, const Entry& b) { return a.used < b.used; });
      bytes -= lru->packed.nbytes() + lru->values.nbytes();
      entries_.erase(lru);
    }
    return f;
  }

  void clear() {
    const std::lock_guard<std::mutex> lock(mutex_);
    entries_.clear();
  }
  int64_t size() {
    const std::lock_guard<std::mutex> lock(mutex_);
    drop_freed();
    return int64_t(entries_.size());
  }

 private:
  using WeakImpl = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;
  struct Key {
    const c10::TensorImpl* impl;
    const void* data;
    int64_t version, H, NV;
    bool interleaved;
    at::ScalarType dtype;
    bool operator==(const Key& o) const {
      return impl == o.impl && data == o.data && version == o.version && H == o.H && NV == o.NV &&
             interleaved == o.interleaved && dtype == o.dtype;
    }
  };
  struct Entry {
    Key key;
    WeakImpl weak;
    Tensor values;  // the weight as packed
    Tensor packed;
    int64_t R, nblocks;
    uint64_t used;
  };
  static int64_t budget() {
    static const int64_t bytes = env_megabytes("RNNKIT_PACK_CACHE_MB", 256);
    return bytes;
  }
  // Byte for byte the values that were packed: writes through `.data` (p.data.copy_(...),
  // a hand-written SGD step) do not bump the weight's version counter.
  static bool same_values(const Tensor& w, const Tensor& values) {
    const Tensor c = w.contiguous();
    return c.nbytes() == values.nbytes() && std::memcmp(c.data_ptr(), values.data_ptr(), c.nbytes()) == 0;
  }
  void drop_freed() {  // a freed weight's address may come back for another tensor
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [](const Entry& e) { return e.weak.expired(); }),
                   entries_.end());
  }
  std::mutex mutex_;
  std::vector<Entry> entries_;
  uint64_t clock_ = 0;
};

PackCache& pack_cache() {
  static PackCache* cache = new PackCache();  // never destroyed: tensors outlive static teardown
  return *cache;
}

// The packed form of weight w (G·H, R) for products x · w^T: kept between calls
// without a backward (`save` false), packed afresh with one (the weights change at
// every training step).
template <typename T>
Fused<T> fused_weight(const Tensor& w, int64_t H, int64_t NV, bool interleaved, bool save) {
  return save ? Fused<T>(w.t(), H, NV, interleaved) : pack_cache().get<T>(w, H, NV, interleaved);
}

template <typename T>
struct Segment {  // x (N, R) rows ldx apart, times a packed B
  const T* x;
  int64_t ldx;
  const Fused<T>* B;
};

// acc (MR rows × NV vectors, in memory) += every segment's rows times unit block blk.
// Kept out of line: inlined into a step's loop, the loop's other live values left the
// row offsets too few registers, and two of them moved in and out of vector registers
// on the multiply-add port at every k.
template <typename T, int MR, int NV>
__attribute__((noinline)) void fused_product(const Segment<T>* segs, int nseg, int64_t blk, int64_t n0, T* out) {
  constexpr int64_t VS = Vec<T>::size();
  typedef T vec_t __attribute__((vector_size(VS * sizeof(T))));
  vec_t acc[MR][NV];
  std::memcpy(acc, out, sizeof acc);
  for (int sgi = 0; sgi < nseg; ++sgi) {
    const Segment<T>& sg = segs[sgi];
    const int64_t R = sg.B->R;
    const vec_t* bv = reinterpret_cast<const vec_t*>(sg.B->data) + blk * R * NV;
    const T* x = sg.x + n0 * sg.ldx;
    for (int64_t r = 0; r < R; ++r, bv += NV) {
      vec_t b[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) b[v] = bv[v];
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        const T xm = x[m * sg.ldx + r];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[m][v] += xm * b[v];
      }
    }
  }
  std::memcpy(out, acc, sizeof acc);
}

// MR rows × NV vectors for one unit block: acc = init, += every segment, then epi.
template <typename T, int MR, int NV, typename Init, typename Epi>
inline void fused_block(const Segment<T>* segs, int nseg, int64_t blk, int64_t n0, const Init& init, const Epi& epi) {
  constexpr int64_t VS = Vec<T>::size();
  alignas(64) T acc[MR][NV * VS];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) init(n0 + m, &acc[m][0]);
  fused_product<T, MR, NV>(segs, nseg, blk, n0, &acc[0][0]);
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) epi(n0 + m, &acc[m][0]);
}

template <typename T, int MR, int NV, typename Init, typename Epi>
inline void fused_rows(int64_t rows, const Segment<T>* segs, int nseg, int64_t blk, int64_t n0, const Init& init,
                       const Epi& epi) {
  if constexpr (MR > 1) {
    if (rows < MR) return fused_rows<T, MR - 1, NV>(rows, segs, nseg, blk, n0, init, epi);
  }
  fused_block<T, MR, NV>(segs, nseg, blk, n0, init, epi);
}

// Thread tm's unit blocks of one step, all N rows (with rows apart, its rows of every
// block). With `claim`, the blocks are taken one by one from that counter of the step
// (all threads share it) instead of a fixed share.
template <typename T, int NV, typename Init, typename Epi>
void fused_step(const Team& tm, int64_t N, int64_t nblocks, const Segment<T>* segs, int nseg, const Init& init,
                const Epi& epi, std::atomic<int64_t>* claim = nullptr) {
  constexpr int MR = NV == 4 ? kRows : NV == 3 ? (kRows * 4) / 3 : kRows;
  const int64_t n0 = tm.rows() ? tm.row0 : 0, n1 = tm.rows() ? tm.row1 : N;
  auto block = [&](int64_t blk) {
    row_groups<MR>(n0, n1, [&](int64_t n, int64_t rows) {
      fused_rows<T, MR, NV>(rows, segs, nseg, blk, n, [&](int64_t m, T* acc) { init(blk, m, acc); },
                            [&](int64_t m, const T* acc) { epi(blk, m, acc); });
    });
  };
  if (claim != nullptr) {
    for (int64_t blk; (blk = claim->fetch_add(1, std::memory_order_relaxed)) < nblocks;) block(blk);
    return;
  }
  const auto [first, last] = tm.rows() ? std::pair<int64_t, int64_t>{0, nblocks} : tm.share(nblocks);
  for (int64_t blk = first; blk < last; ++blk) block(blk);
}

// L2 cache per core; 1 MiB where the system does not say.
inline int64_t l2_bytes() {
  static const int64_t l2 = [] {
    long size = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    size = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return size > 0 ? int64_t(size) : int64_t(1) << 20;
  }();
  return l2;
}

// Whether the threads of a loop should split the batch rows rather than the units
// (the columns of the products). A row's state depends only on its own past, so with
// rows apart each thread runs the whole sequence alone: no barrier per step and no
// state crossing between cores. Each thread then reads all the packed weights every
// step, so they must stay in its L2 cache; with units apart each reads only its share.
// RNNKIT_SPLIT=rows|units|claimed overrides (for measurements and tests).
inline bool rows_apart(int threads, int64_t N, int64_t weight_bytes) {
  if (threads < 2 || N < 4 * threads) return false;
  if (const char* e = std::getenv("RNNKIT_SPLIT")) {
    if (std::strcmp(e, "rows") == 0) return true;
    if (std::strcmp(e, "units") == 0 || std::strcmp(e, "claimed") == 0) return false;
  }
  return weight_bytes <= l2_bytes();
}

// With units apart, whether the threads of a fused loop take the unit blocks of each
// step as they come free rather than a fixed share. Where a thread's share of the
// weights would not stay in its L2 cache anyway, nothing is lost by moving blocks
// between threads, and a core slowed by the machine then takes fewer instead of
// holding the others at every step's barrier.
inline bool units_claimed(int threads, int64_t weight_bytes) {
  if (threads < 2) return false;
  if (const char* e = std::getenv("RNNKIT_SPLIT")) {
    if (std::strcmp(e, "claimed") == 0) return true;
    if (std::strcmp(e, "units") == 0 || std::strcmp(e, "rows") == 0) return false;
  }
  return weight_bytes > threads * l2_bytes();
}

// ---- the forward loop -------------------------------------------------------------------

struct Args {
  int64_t kind, flags, skip;
  LstmLayout lay;
};

template <typename T>
std::vector<Tensor> forward_impl(const Args& a, const Tensor& xp, const Tensor& x, const Tensor& w_ih,
                                 const Tensor& b_in, const Tensor& h_init, const OptT& c0, const OptT& g0,
                                 const OptT& w_hh, const OptT& b_rec, const OptT& w_skip, const OptT& peep,
                                 const OptT& w_gate, const OptT& lengths, bool save) {
  // The input part: xp (L, N, G·H) given, or x (L, N, D) with w_ih, b_in, whose product
  // then runs inside each step's (LSTM and Elman only).
  const Tensor& in0 = xp.defined() ? xp : x;
  const int64_t L = in0.size(0), N = in0.size(1), GH = xp.defined() ? xp.size(2) : w_ih.size(0);
  const int64_t H = h_init.size(2), off = h_init.size(0) - 1, d = a.skip;
  const auto opts = h_init.options();
  const Tensor lens = lengths.has_value() ? lengths->contiguous() : Tensor();
  const Shape s{N, H, lens.defined() ? lens.data_ptr<int64_t>() : nullptr};
  const bool lstm = a.kind == LSTM, fgr = lstm && (a.flags & GATE_RECURRENCE);
  const bool gru = a.kind == GRU, orig = a.kind == GRU_ORIGINAL;

  Tensor hbuf = workspace().empty({off + 1 + L, N, H}, opts);
  hbuf.narrow(0, 0, off + 1).copy_(h_init);
  // Without backward (inference) c and FGR's gates need only two slots, used in turn;
  // the last one written is returned alone (the caller reads only the final state).
  const int64_t slots = save ? L + 1 : 2;
  auto slot = [&](int64_t t) { return save ? t : t % 2; };
  Tensor cs, gs, acts;
  if (lstm) {
    cs = workspace().empty({slots, N, H}, opts);
    cs[0].copy_(*c0);
  }
  if (fgr) {
    gs = workspace().empty({slots, N, 3 * H}, opts);
    gs[0].copy_(*g0);
  }
  const int64_t width = lstm ? GH : gru ? 4 * H : orig ? 3 * H : 0;  // saved activations per row
  if (width && save) acts = workspace().empty({L, N, width}, opts);
  Tensor scratch = width ? at::empty({N, width}, opts) : Tensor();
  Tensor pre = at::empty({N, GH}, opts);  // pre-activations (GRU: the input part)
  Tensor rec = (gru || orig) ? at::empty({N, GH}, opts) : Tensor();
  Tensor rh = orig ? at::empty({N, H}, opts) : Tensor();

  const Tensor peep_c = peep.has_value() ? peep->contiguous() : Tensor();
  const Tensor b_c = b_rec.has_value() ? b_rec->contiguous() : Tensor();
  const T* peep_p = peep_c.defined() ? peep_c.data_ptr<T>() : nullptr;
  const T* b_p = b_c.defined() ? b_c.data_ptr<T>() : nullptr;

  const T* xb = xp.defined() ? xp.data_ptr<T>() : nullptr;
  T* hb = hbuf.data_ptr<T>();
  T* cb = lstm ? cs.data_ptr<T>() : nullptr;
  T* gb = fgr ? gs.data_ptr<T>() : nullptr;
  T* pp = pre.data_ptr<T>();
  T* rp = (gru || orig) ? rec.data_ptr<T>() : nullptr;
  T* rhp = orig ? rh.data_ptr<T>() : nullptr;
  T* ab = width ? (save ? acts.data_ptr<T>() : scratch.data_ptr<T>()) : nullptr;
  const int64_t NH = N * H;
  const bool own = kOwnProducts || N <= kSmallRows;
  const int threads = team_size(own, N * H * (GH + (d ? GH : 0) + (fgr ? GH * 3 : 0)));
  auto finish = [&]() -> std::vector<Tensor> {
    if (save) return {hbuf, cs, gs, acts};
    return {hbuf, lstm ? cs.narrow(0, slot(L), 1) : cs, fgr ? gs.narrow(0, slot(L), 1) : gs, acts};
  };
  // Where step t reads and writes: h_{t-1}, h_{t-d}, h_t, the activations, c_{t-1}, c_t,
  // FGR's gates of t-1 and t (nullptr where the cell has none).
  struct StepAt {
    const T *hp, *hs;
    T *hn, *act;
    const T* cp;
    T* cn;
    const T* gp;
    T* gn;
  };
  auto step_at = [&](int64_t t) {
    return StepAt{hb + (off + t) * NH, hb + (off + t + 1 - d) * NH, hb + (off + t + 1) * NH,
                  ab == nullptr ? nullptr : save ? ab + t * N * width : ab,
                  lstm ? cb + slot(t) * NH : nullptr, lstm ? cb + slot(t + 1) * NH : nullptr,
                  fgr ? gb + slot(t) * 3 * NH : nullptr, fgr ? gb + slot(t + 1) * 3 * NH : nullptr};
  };

  if (own && (lstm || gru || a.kind == RNN_TANH || a.kind == RNN_RELU)) {  // gate math in the epilogue
    constexpr int64_t VS = Vec<T>::size();
    const int64_t G = GH / H, NV = lstm ? G : gru ? 3 : 4;
    const bool inter = lstm || gru;  // Elman: NV vectors of units of its one gate
    const int64_t UB = inter ? VS : NV * VS;
    const Fused<T> FW = fused_weight<T>(*w_hh, H, NV, inter, save);
    const bool project = !xp.defined();  // the input product joins the step's
    const Fused<T> FX = project ? fused_weight<T>(w_ih, H, NV, inter, save) : Fused<T>();
    const T* x0 = project ? x.data_ptr<T>() : nullptr;
    const T* bias_in = project && b_in.defined() ? b_in.data_ptr<T>() : nullptr;
    const Fused<T> FS = d && !gru ? fused_weight<T>(*w_skip, H, NV, inter, save) : Fused<T>();
    const Fused<T> FG = fgr ? fused_weight<T>(*w_gate, H, NV, inter, save) : Fused<T>();
    // GRU: the skip term joins x_n outside the reset gate, by a product of its own
    const Operand<T> S = gru && d ? Operand<T>(w_skip->t(), N) : Operand<T>();
    int64_t weight_bytes = FW.packed.numel() + (project ? FX.packed.numel() : 0);
    weight_bytes += (FS.data ? FS.packed.numel() : 0) + (fgr ? FG.packed.numel() : 0);
    weight_bytes = weight_bytes * int64_t(sizeof(T)) + packed_bytes<T>({&S});
    const bool by_rows = rows_apart(threads, N, weight_bytes);
    // (in training it measured no better than fixed shares: kept to inference)
    const bool claimed = !by_rows && !save && units_claimed(threads, weight_bytes);
    std::unique_ptr<std::atomic<int64_t>[]> claims(claimed ? new std::atomic<int64_t>[L]() : nullptr);
    auto run_step = [&](const Team& tm, int64_t t) {
      const T* x_t = project ? nullptr : xb + t * N * GH;
      const StepAt at = step_at(t);
      const T *hp = at.hp, *hs = at.hs, *cp = at.cp, *gp = at.gp;
      T *hn = at.hn, *act = at.act, *cn = at.cn, *gn = at.gn;
      const T* xs = x_t;
      if (gru && d) {
        product<T>(tm, pp, GH, x_t, GH, hs, H, N, S, opts);
        tm.barrier();
        xs = pp;
      }
      Segment<T> segs[4] = {{hp, H, &FW}};
      int nseg = 1;
      if (project) segs[nseg++] = {x0 + t * x.stride(0), x.stride(1), &FX};
      if (d && !gru) segs[nseg++] = {hs, H, &FS};
      if (fgr) segs[nseg++] = {gp, 3 * H, &FG};
      auto init = [&](int64_t blk, int64_t n, T* acc) {
        for (int64_t v = 0; v < NV; ++v) {
          const int64_t j = blk * UB + (inter ? 0 : v * VS), k = std::min<int64_t>(VS, H - j);
          const int64_t col = (inter ? v * H : 0) + j;
          Vec<T> a0(T(0));
          if (k > 0) {
            if (gru && v == 2) a0 = Vec<T>::loadu(b_p + j, k);
            else if (!project) a0 = Vec<T>::loadu(xs + n * GH + col, k);
            else if (bias_in != nullptr) a0 = Vec<T>::loadu(bias_in + col, k);
          }
          a0.store(acc + v * VS);
        }
      };
      auto epi = [&](int64_t blk, int64_t n, const T* acc) {
        const int64_t j0 = blk * UB, j1 = std::min(H, j0 + UB);
        if (!s.active(t, n)) {  // past its length the row keeps its state, zero activations
          copy_cols(hn + n * H, hp + n * H, j0, j1);
          if (lstm) copy_cols(cn + n * H, cp + n * H, j0, j1);
          if (fgr)
            for (int64_t b = 0; b < 3; ++b) copy_cols(gn + n * 3 * H + b * H, gp + n * 3 * H + b * H, j0, j1);
          if (width) zero_blocks(act + n * width, width / H, H, j0, j1);
          return;
        }
        if (lstm) {
          Vec<T> p[4];
          for (int64_t v = 0; v < NV; ++v) p[v] = Vec<T>::loadu(acc + v * VS);
          T* kept = save ? act + n * GH : nullptr;  // inference keeps no activations
          lstm_cell<T>(a.lay, H, j0, j1 - j0, p, cp + n * H, peep_p, kept, cn + n * H, hn + n * H,
                       fgr ? gn + n * 3 * H : nullptr);
        } else if (gru) {
          const int64_t k = j1 - j0;
          gru_cell<T>(H, j0, k, sigmoid(Vec<T>::loadu(acc)), sigmoid(Vec<T>::loadu(acc + VS)),
                      Vec<T>::loadu(acc + 2 * VS), Vec<T>::loadu(xs + n * GH + 2 * H + j0, k), hp + n * H,
                      act + n * width, hn + n * H);
        } else {
          for (int64_t v = 0; v < NV; ++v) {
            const int64_t j = j0 + v * VS;
            if (j >= H) break;
            const Vec<T> pv = Vec<T>::loadu(acc + v * VS);
            const Vec<T> out = a.kind == RNN_TANH ? tanh(pv) : at::vec::maximum(pv, Vec<T>(T(0)));
            out.store(hn + n * H + j, std::min<int64_t>(VS, H - j));
          }
        }
      };
      const int64_t nblocks = FW.nblocks;
      std::atomic<int64_t>* claim = claimed ? &claims[t] : nullptr;
      if (NV == 4) fused_step<T, 4>(tm, N, nblocks, segs, nseg, init, epi, claim);
      else fused_step<T, 3>(tm, N, nblocks, segs, nseg, init, epi, claim);
      tm.barrier();
    };
    run_loop(threads, by_rows, N, L, NV == 3 ? (kRows * 4) / 3 : kRows, run_step);
    return finish();
  }

  TORCH_CHECK(xb != nullptr, "rnnkit recurrence: this cell needs its input projected (xp)");
  // Right operands, x · B with B = W^T
  Operand<T> W, Wrz, Wn, S, Gt;
  if (orig) {
    Wrz = Operand<T>(w_hh->narrow(0, 0, 2 * H).t(), N);
    Wn = Operand<T>(w_hh->narrow(0, 2 * H, H).t(), N);
  } else if (w_hh.has_value()) {
    W = Operand<T>(w_hh->t(), N);
  }
  if (d) S = Operand<T>(w_skip->t(), N);
  if (fgr) Gt = Operand<T>(w_gate->t(), N);
  const bool by_rows = rows_apart(threads, N, packed_bytes<T>({&W, &Wrz, &Wn, &S, &Gt}));
  run_loop(threads, by_rows, N, L, kRows, [&](const Team& tm, int64_t t) {
    const T* x_t = xb + t * N * GH;
    const StepAt at = step_at(t);
    const T *hp = at.hp, *hs = at.hs, *cp = at.cp, *gp = at.gp;
    T *hn = at.hn, *act = at.act, *cn = at.cn, *gn = at.gn;
    // past its length a row keeps its state; its activations are zero
    auto keep = [&](int64_t n, int64_t j0, int64_t j1) {
      copy_cols(hn + n * H, hp + n * H, j0, j1);
      if (lstm) copy_cols(cn + n * H, cp + n * H, j0, j1);
      if (fgr)
        for (int64_t b = 0; b < 3; ++b) copy_cols(gn + n * 3 * H + b * H, gp + n * 3 * H + b * H, j0, j1);
      if (width) zero_blocks(act + n * width, width / H, H, j0, j1);
    };
    // xs: the input part, x_t plus the skip term
    const T* xs = x_t;
    if (d) {
      product<T>(tm, pp, GH, x_t, GH, hs, H, N, S, opts);
      if (gru || orig) tm.barrier();  // their next products split other column counts
      xs = pp;
    }
    if (gru) {  // r, z = σ(xs + h W^T); n = tanh(x_n + r (W_nh h + b_nh))
      product<T>(tm, rp, GH, nullptr, 0, hp, H, N, W, opts);
      tm.barrier();
      for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
        if (s.active(t, n)) gru_forward<T>(H, j0, j1, xs + n * GH, rp + n * GH, b_p, hp + n * H, act + n * width, hn + n * H);
        else keep(n, j0, j1);
      });
      tm.barrier();
      return;
    }
    if (orig) {  // r, z = σ(xs + h W_rz^T); n = tanh(x_n + (r h) W_n^T)
      product<T>(tm, rp, GH, xs, GH, hp, H, N, Wrz, opts);
      tm.barrier();
      for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
        gru_orig_forward_rz<T>(H, j0, j1, rp + n * GH, hp + n * H, act + n * width, rhp + n * H);
      });
      tm.barrier();
      product<T>(tm, rp + 2 * H, GH, xs + 2 * H, GH, rhp, H, N, Wn, opts);
      tm.barrier();
      for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
        if (s.active(t, n)) gru_orig_forward_n<T>(H, j0, j1, rp + n * GH + 2 * H, hp + n * H, act + n * width, hn + n * H);
        else keep(n, j0, j1);
      });
      tm.barrier();
      return;
    }
    // LSTM, Elman, additive: pre = xs + h W^T (+ FGR's g_{t-1} W_gate^T)
    const T* in = xs;
    if (a.kind != ADDITIVE) {
      product<T>(tm, pp, GH, xs, GH, hp, H, N, W, opts);
      in = pp;
    }
    if (fgr) product<T>(tm, pp, GH, pp, GH, gp, 3 * H, N, Gt, opts);
    tm.barrier();
    for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
      if (!s.active(t, n)) keep(n, j0, j1);
      else if (lstm)
        lstm_forward<T>(a.lay, H, GH / H, j0, j1, in + n * GH, cp + n * H, peep_p, act + n * GH, cn + n * H,
                        hn + n * H, fgr ? gn + n * 3 * H : nullptr);
      else simple_forward<T>(a.kind, j0, j1, in + n * GH, hp + n * H, hn + n * H);
    });
    tm.barrier();
  });
  return finish();
}

// ---- backward elementwise passes --------------------------------------------------------

// LSTM. dh: gradient of h_t; dc (in/out): of c_t, becomes that of c_{t-1}; dg (in/out,
// FGR): of gates_t, zeroed (the product with W_gate refills it); writes dpre (G·H).
template <typename T>
void lstm_backward(const LstmLayout& lay, int64_t H, int64_t j0, int64_t j1, const T* dh, T* dc, T* dg,
                   const T* act, const T* c_prev, const T* c, const T* peep, T* dpre) {
  using V = Vec<T>;
  const int64_t flags = lay.flags;
  const V one(T(1)), zero(T(0));
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V dhv = V::loadu(dh + j, k);
    const V cv = V::loadu(c + j, k), cp = V::loadu(c_prev + j, k);
    const V y = (flags & NO_OUTPUT_ACT) ? cv : tanh(cv);
    V dcv = V::loadu(dc + j, k);
    V dy = dhv, da_o = zero;
    if (lay.bo >= 0) {
      const V o = V::loadu(act + lay.bo * H + j, k);
      V d_o = dhv * y;
      if (dg != nullptr) d_o = d_o + V::loadu(dg + 2 * H + j, k);
      da_o = d_o * o * (one - o);
      da_o.store(dpre + lay.bo * H + j, k);
      dy = dhv * o;
    }
    dcv = dcv + ((flags & NO_OUTPUT_ACT) ? dy : dy * (one - y * y));
    if (flags & PEEP_O) dcv = dcv + da_o * V::loadu(peep + 2 * H + j, k);
    const V g = V::loadu(act + lay.bg * H + j, k);
    const V i = lay.bi >= 0 ? V::loadu(act + lay.bi * H + j, k) : one;
    const V dgv = dcv * i;
    ((flags & NO_INPUT_ACT) ? dgv : dgv * (one - g * g)).store(dpre + lay.bg * H + j, k);
    V dcp;
    if (lay.bf >= 0) {
      const V f = V::loadu(act + lay.bf * H + j, k);
      V df = dcv * cp;
      if (dg != nullptr) df = df + V::loadu(dg + H + j, k);
      const V da_f = df * f * (one - f);
      da_f.store(dpre + lay.bf * H + j, k);
      dcp = dcv * f;
      if (flags & PEEP_F) dcp = dcp + da_f * V::loadu(peep + H + j, k);
    } else {
      dcp = (flags & COUPLED) ? dcv * (one - i) : dcv;
    }
    if (lay.bi >= 0) {
      V di = (flags & COUPLED) ? dcv * (g - cp) : dcv * g;
      if (dg != nullptr) di = di + V::loadu(dg + j, k);
      const V da_i = di * i * (one - i);
      da_i.store(dpre + lay.bi * H + j, k);
      if (flags & PEEP_I) dcp = dcp + da_i * V::loadu(peep + j, k);
    }
    dcp.store(dc + j, k);
  }
  if (dg != nullptr) zero_blocks(dg, 3, H, j0, j1);
}

// GRU standard: writes dxp (3H), drec (3H: r, z, and the n-product's gradient), extra
// (H: the n-product's gradient again, for W_nh and b_nh); adds dh z to dh_prev.
template <typename T>
void gru_backward(int64_t H, int64_t j0, int64_t j1, const T* dh, const T* act, const T* hp, T* dxp, T* drec,
                  T* extra, T* dh_prev) {
  using V = Vec<T>;
  const V one(T(1));
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V dhv = V::loadu(dh + j, k), h = V::loadu(hp + j, k);
    const V r = V::loadu(act + j, k), z = V::loadu(act + H + j, k);
    const V n = V::loadu(act + 2 * H + j, k), hn = V::loadu(act + 3 * H + j, k);
    const V dz = dhv * (h - n);
    const V da_n = dhv * (one - z) * (one - n * n);
    const V d_hn = da_n * r;
    const V da_r = da_n * hn * r * (one - r);
    const V da_z = dz * z * (one - z);
    da_r.store(dxp + j, k);
    da_z.store(dxp + H + j, k);
    da_n.store(dxp + 2 * H + j, k);
    da_r.store(drec + j, k);
    da_z.store(drec + H + j, k);
    d_hn.store(drec + 2 * H + j, k);
    d_hn.store(extra + j, k);
    (V::loadu(dh_prev + j, k) + dhv * z).store(dh_prev + j, k);
  }
}

// GRU original, first half: da_n into dxp's n block.
template <typename T>
void gru_orig_backward_n(int64_t H, int64_t j0, int64_t j1, const T* dh, const T* act, T* dxp) {
  using V = Vec<T>;
  const V one(T(1));
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V z = V::loadu(act + H + j, k), n = V::loadu(act + 2 * H + j, k);
    (V::loadu(dh + j, k) * (one - z) * (one - n * n)).store(dxp + 2 * H + j, k);
  }
}

// GRU original, second half, given d_rh = da_n W_nh: da_r, da_z; dh_prev += dh z + d_rh r.
template <typename T>
void gru_orig_backward_rz(int64_t H, int64_t j0, int64_t j1, const T* dh, const T* act, const T* hp, const T* d_rh,
                          T* dxp, T* dh_prev) {
  using V = Vec<T>;
  const V one(T(1));
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V dhv = V::loadu(dh + j, k), h = V::loadu(hp + j, k), drh = V::loadu(d_rh + j, k);
    const V r = V::loadu(act + j, k), z = V::loadu(act + H + j, k), n = V::loadu(act + 2 * H + j, k);
    (drh * h * r * (one - r)).store(dxp + j, k);
    (dhv * (h - n) * z * (one - z)).store(dxp + H + j, k);
    (V::loadu(dh_prev + j, k) + dhv * z + drh * r).store(dh_prev + j, k);
  }
}

template <typename T>
void simple_backward(int64_t kind, int64_t j0, int64_t j1, const T* dh, const T* h, T* dpre, T* dh_prev) {
  using V = Vec<T>;
  const V one(T(1)), zero(T(0));
  for (int64_t j = j0; j < j1; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), j1 - j);
    const V dhv = V::loadu(dh + j, k);
    if (kind == RNN_TANH) {
      const V hv = V::loadu(h + j, k);
      (dhv * (one - hv * hv)).store(dpre + j, k);
    } else if (kind == RNN_RELU) {
      V::blendv(zero, dhv, V::loadu(h + j, k) > zero).store(dpre + j, k);
    } else {  // additive: dpre = dh, and dh flows on to h_{t-1} unchanged
      dhv.store(dpre + j, k);
      (V::loadu(dh_prev + j, k) + dhv).store(dh_prev + j, k);
    }
  }
}

// ---- the backward loop ------------------------------------------------------------------

template <typename T>
std::vector<Tensor> backward_impl(const Args& a, const Tensor& grad_hbuf, const OptT& grad_c, const OptT& grad_g,
                                  const Tensor& hbuf, const OptT& cs, const OptT& gs, const OptT& acts,
                                  const OptT& w_hh, const OptT& w_skip, const OptT& peep, const OptT& w_gate,
                                  const OptT& lengths) {
  const int64_t d = a.skip, off = std::max<int64_t>(d - 1, 0);
  const int64_t L = hbuf.size(0) - off - 1, N = hbuf.size(1), H = hbuf.size(2);
  const auto opts = hbuf.options();
  const bool lstm = a.kind == LSTM, fgr = lstm && (a.flags & GATE_RECURRENCE);
  const bool gru = a.kind == GRU, orig = a.kind == GRU_ORIGINAL;
  const int64_t G = lstm ? (a.lay.bi >= 0) + (a.lay.bf >= 0) + 1 + (a.lay.bo >= 0) : (gru || orig) ? 3 : 1;
  const int64_t GH = G * H, NH = N * H;
  const int64_t width = acts.has_value() ? acts->size(2) : 0;
  const Tensor lens = lengths.has_value() ? lengths->contiguous() : Tensor();
  const Shape s{N, H, lens.defined() ? lens.data_ptr<int64_t>() : nullptr};

  Tensor dH = workspace().empty(grad_hbuf.sizes(), opts).copy_(grad_hbuf);
  Tensor dc = lstm ? grad_c->contiguous().clone() : Tensor();
  Tensor dg = fgr ? grad_g->contiguous().clone() : Tensor();
  Tensor dxp = workspace().empty({L, N, GH}, opts);
  Tensor extra = gru ? workspace().empty({L, N, H}, opts) : Tensor();
  Tensor drec = gru ? at::empty({N, GH}, opts) : Tensor();
  Tensor d_rh = orig ? at::empty({N, H}, opts) : Tensor();

  // Right operands, dpre · B with B = W
  Operand<T> W, Wrz, Wn, S, Gm;
  if (orig) {
    Wrz = Operand<T>(w_hh->narrow(0, 0, 2 * H), N);
    Wn = Operand<T>(w_hh->narrow(0, 2 * H, H), N);
  } else if (w_hh.has_value()) {
    W = Operand<T>(*w_hh, N);
  }
  if (d) S = Operand<T>(*w_skip, N);
  if (fgr) Gm = Operand<T>(*w_gate, N);
  const Tensor peep_c = peep.has_value() ? peep->contiguous() : Tensor();
  const T* peep_p = peep_c.defined() ? peep_c.data_ptr<T>() : nullptr;
  const T* hb = hbuf.data_ptr<T>();
  const T* cb = lstm ? cs->data_ptr<T>() : nullptr;
  const T* ab = width ? acts->data_ptr<T>() : nullptr;
  T* dHb = dH.data_ptr<T>();
  T* dcb = lstm ? dc.data_ptr<T>() : nullptr;
  T* dgb = fgr ? dg.data_ptr<T>() : nullptr;
  T* dxb = dxp.data_ptr<T>();
  T* dr = gru ? drec.data_ptr<T>() : nullptr;
  T* drh = orig ? d_rh.data_ptr<T>() : nullptr;
  const bool own = kOwnProducts || N <= kSmallRows;
  const int threads = team_size(own, N * H * (GH + (d ? GH : 0) + (fgr ? GH * 3 : 0)));
  const bool by_rows = rows_apart(threads, N, packed_bytes<T>({&W, &Wrz, &Wn, &S, &Gm}));

  run_loop(threads, by_rows, N, L, kRows, [&](const Team& tm, int64_t i) {  // t = L-1 down to 0
    const int64_t t = L - 1 - i;
    const T* dh = dHb + (off + t + 1) * NH;
    T* dhp = dHb + (off + t) * NH;
    const T* hp = hb + (off + t) * NH;
    const T* act = ab ? ab + t * N * width : nullptr;
    T* dx = dxb + t * N * GH;
    // past its length a row has zero dpre and passes its gradient on unchanged
    auto pass = [&](int64_t n, int64_t j0, int64_t j1) {
      zero_blocks(dx + n * GH, G, H, j0, j1);
      for (int64_t j = j0; j < j1; ++j) dhp[n * H + j] += dh[n * H + j];
    };
    if (lstm) {
      const T* c_prev = cb + t * NH;
      const T* c = cb + (t + 1) * NH;
      for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
        if (s.active(t, n))
          lstm_backward<T>(a.lay, H, j0, j1, dh + n * H, dcb + n * H, fgr ? dgb + n * 3 * H : nullptr,
                           act + n * GH, c_prev + n * H, c + n * H, peep_p, dx + n * GH);
        else pass(n, j0, j1);  // its dc and dg rows stay as they are
      });
      tm.barrier();
      product<T>(tm, dhp, H, dhp, H, dx, GH, N, W, opts);
      if (fgr) product<T>(tm, dgb, 3 * H, dgb, 3 * H, dx, GH, N, Gm, opts);
    } else if (gru) {
      T* ex = extra.data_ptr<T>() + t * NH;
      for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
        if (s.active(t, n)) {
          gru_backward<T>(H, j0, j1, dh + n * H, act + n * width, hp + n * H, dx + n * GH, dr + n * GH, ex + n * H,
                          dhp + n * H);
        } else {
          pass(n, j0, j1);
          zero_blocks(dr + n * GH, 3, H, j0, j1);
          zero_cols(ex + n * H, j0, j1);
        }
      });
      tm.barrier();
      product<T>(tm, dhp, H, dhp, H, dr, GH, N, W, opts);
    } else if (orig) {
      for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
        if (s.active(t, n)) gru_orig_backward_n<T>(H, j0, j1, dh + n * H, act + n * width, dx + n * GH);
        else zero_cols(dx + n * GH + 2 * H, j0, j1);
      });
      tm.barrier();
      product<T>(tm, drh, H, nullptr, 0, dx + 2 * H, GH, N, Wn, opts);
      tm.barrier();
      for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
        if (s.active(t, n))
          gru_orig_backward_rz<T>(H, j0, j1, dh + n * H, act + n * width, hp + n * H, drh + n * H, dx + n * GH,
                                  dhp + n * H);
        else pass(n, j0, j1);
      });
      tm.barrier();
      product<T>(tm, dhp, H, dhp, H, dx, GH, N, Wrz, opts);
    } else {
      const T* hn = hb + (off + t + 1) * NH;
      for_units<T>(tm, N, H, [&](int64_t n, int64_t j0, int64_t j1) {
        if (s.active(t, n)) simple_backward<T>(a.kind, j0, j1, dh + n * H, hn + n * H, dx + n * GH, dhp + n * H);
        else pass(n, j0, j1);
      });
      tm.barrier();
      if (a.kind != ADDITIVE) product<T>(tm, dhp, H, dhp, H, dx, GH, N, W, opts);
    }
    if (d) {
      T* target = dHb + (off + t + 1 - d) * NH;
      product<T>(tm, target, H, target, H, dx, GH, N, S, opts);
    }
    tm.barrier();
  });
  return {dxp, dH.narrow(0, 0, off + 1), dc, dg, extra};
}

// ---- the ops ------------------------------------------------------------------------

Args make_args(int64_t kind, int64_t flags, at::IntArrayRef blocks, int64_t skip) {
  TORCH_CHECK(blocks.size() == 4, "rnnkit recurrence: blocks must list i, f, g, o");
  return Args{kind, flags, skip, LstmLayout{blocks[0], blocks[1], blocks[2], blocks[3], flags}};
}

std::vector<Tensor> forward(int64_t kind, int64_t flags, at::IntArrayRef blocks, int64_t skip, const OptT& xp,
                            const OptT& x, const OptT& w_ih, const OptT& b_in, const Tensor& h_init, const OptT& c0,
                            const OptT& g0, const OptT& w_hh, const OptT& b_rec, const OptT& w_skip, const OptT& peep,
                            const OptT& w_gate, const OptT& lengths, bool save) {
  TORCH_CHECK(h_init.device().is_cpu(), "rnnkit recurrence: CPU tensors only");
  TORCH_CHECK(xp.has_value() != x.has_value(), "rnnkit recurrence: give xp or x (with w_ih)");
  const Args a = make_args(kind, flags, blocks, skip);
  const Tensor xpc = xp.has_value() ? xp->contiguous() : Tensor();
  Tensor xc, wc, bc;
  if (x.has_value()) {
    TORCH_CHECK(kOwnProducts || x->size(1) <= kSmallRows, "rnnkit recurrence: no in-step input product here");
    xc = x->contiguous();  // (L, N, D): each step reads one block, not N rows a sequence apart
    wc = w_ih->contiguous();
    if (b_in.has_value()) bc = b_in->contiguous();
  }
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(h_init.scalar_type(), "rnnkit_recurrence_forward", [&] {
    out = forward_impl<scalar_t>(a, xpc, xc, wc, bc, h_init, c0, g0, w_hh, b_rec, w_skip, peep, w_gate, lengths, save);
  });
  return out;
}

// What the extension does here: [own products for many rows, up to how many rows
// it does its own products anyway]. The input product runs inside the steps where
// it does its own products (LSTM and Elman).
std::vector<int64_t> info() { return {kOwnProducts ? 1 : 0, kSmallRows}; }

// Entries in the pack cache (weights alive), after emptying it when `clear`.
// Bytes the workspace holds, after releasing its idle buffers when `release`.
int64_t workspace_bytes(bool release) { return workspace().held(release); }

// Rows handed between threads by `run_rows_balanced` since the last read.
int64_t rows_handed_over_count() { return rows_handed_over.exchange(0); }

int64_t pack_cache_entries(bool clear) {
  if (clear) pack_cache().clear();
  return pack_cache().size();
}

std::vector<Tensor> backward(int64_t kind, int64_t flags, at::IntArrayRef blocks, int64_t skip,
                             const Tensor& grad_hbuf, const OptT& grad_c, const OptT& grad_g, const Tensor& hbuf,
                             const OptT& cs, const OptT& gs, const OptT& acts, const OptT& w_hh,
                             const OptT& w_skip, const OptT& peep, const OptT& w_gate, const OptT& lengths) {
  const Args a = make_args(kind, flags, blocks, skip);
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(hbuf.scalar_type(), "rnnkit_recurrence_backward", [&] {
    out = backward_impl<scalar_t>(a, grad_hbuf, grad_c, grad_g, hbuf, cs, gs, acts, w_hh, w_skip, peep, w_gate,
                                  lengths);
  });
  return out;
}

// The activations on a tensor, for tests: which 0 sigmoid, 1 tanh.
Tensor activation(const Tensor& x, int64_t which) {
  Tensor in = x.contiguous(), out = at::empty_like(in);
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "rnnkit_activation", [&] {
    using V = Vec<scalar_t>;
    const scalar_t* src = in.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    for (int64_t j = 0; j < in.numel(); j += V::size()) {
      const int64_t k = std::min<int64_t>(V::size(), in.numel() - j);
      const V v = V::loadu(src + j, k);
      (which == 0 ? sigmoid<scalar_t>(v) : tanh<scalar_t>(v)).store(dst + j, k);
    }
  });
  return out;
}

// out = init + x · B, `repeat` times (B packed once), for tests and measurements.
Tensor product_op(const Tensor& init, const Tensor& x, const Tensor& B, int64_t repeat) {
  Tensor out = at::empty_like(init);
  const Tensor xi = x.contiguous(), ii = init.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_product", [&] {
    const int64_t N = x.size(0);
    const Operand<scalar_t> op(B, N);
    run_team(team_size(op.data != nullptr, N * B.size(0) * B.size(1)), [&](const Team& tm) {
      for (int64_t i = 0; i < repeat; ++i) {
        product<scalar_t>(tm, out.data_ptr<scalar_t>(), B.size(1), ii.data_ptr<scalar_t>(), B.size(1),
                          xi.data_ptr<scalar_t>(), x.size(1), N, op, x.options());
        tm.barrier();
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(rnnkit_recurrence, m) {
  m.def("forward(int kind, int flags, int[] blocks, int skip, Tensor? xp, Tensor? x, Tensor? w_ih, "
        "Tensor? b_in, Tensor h_init, Tensor? c0, Tensor? g0, Tensor? w_hh, Tensor? b_rec, Tensor? w_skip, "
        "Tensor? peep, Tensor? w_gate, Tensor? lengths, bool save) -> Tensor[]");
  m.def("info() -> int[]", TORCH_FN(info));
  m.def("pack_cache_entries(bool clear) -> int", TORCH_FN(pack_cache_entries));
  m.def("workspace_bytes(bool release) -> int", TORCH_FN(workspace_bytes));
  m.def("rows_handed_over() -> int", TORCH_FN(rows_handed_over_count));
  m.def("backward(int kind, int flags, int[] blocks, int skip, Tensor grad_hbuf, Tensor? grad_c, "
        "Tensor? grad_g, Tensor hbuf, Tensor? cs, Tensor? gs, Tensor? acts, Tensor? w_hh, "
        "Tensor? w_skip, Tensor? peep, Tensor? w_gate, Tensor? lengths) -> Tensor[]");
  m.def("activation(Tensor x, int which) -> Tensor");
  m.def("product(Tensor init, Tensor x, Tensor B, int repeat) -> Tensor");
  m.def("mm(Tensor a, Tensor b, Tensor? bias, bool blas) -> Tensor");
  m.impl("mm", c10::DispatchKey::CPU, TORCH_FN(mm_op));
  m.impl("product", c10::DispatchKey::CPU, TORCH_FN(product_op));
  m.impl("forward", c10::DispatchKey::CPU, TORCH_FN(forward));
  m.impl("activation", c10::DispatchKey::CPU, TORCH_FN(activation));
  m.impl("backward", c10::DispatchKey::CPU, TORCH_FN(backward));
}
