namespace Whittle.Native.Tensors;

/// <summary>
/// Every op the engine runs, forward and backward, on one device. The CPU implementation (Cpu/CpuBackend.cs) is
/// the ground truth; the CUDA one (Cuda/CudaBackend.cs, kernels/*.cu) must match it within the parity tolerances.
///
/// Conventions, for every method:
///  - Tensors are f32 unless stated; token ids and targets are i32. All tensors passed to one call live on this device.
///  - Outputs are passed in, already allocated. Forward outputs are overwritten.
///  - Backward outputs (every parameter whose name starts with "d") are ACCUMULATED into (+=), so residual
///    branches, shared weights and micro-batch accumulation need no extra adds. Callers zero them first.
///  - Matrix arguments are 2-D "row-dense" views: last stride 1, row stride = leading dimension (>= columns).
///    A sub-network's weight W[:m', :d'] is such a view and is passed without a copy.
///  - Shape comments use B batch, T time, C channels (active width), H heads, D head size, V vocab, N = B*T rows.
/// </summary>
public interface IBackend : IDisposable
{
    Device Device { get; }
    /// <summary>Human-readable description (e.g. "cpu (2 threads, AVX2)" or the GPU's name).</summary>
    string Name { get; }

    // ---------------------------------------------------------------- memory
    Tensor Empty(DType dtype, params int[] shape);
    Tensor Zeros(DType dtype, params int[] shape);
    /// <summary>A copy of a CPU tensor on this device (any strides in, contiguous out).</summary>
    Tensor FromHost(Tensor host);
    /// <summary>dst = src, elementwise, any strides, same shape and dtype (f32 to bf16 and back converts).</summary>
    void Copy(Tensor src, Tensor dst);
    void Fill(Tensor dst, float value);
    /// <summary>Blocks until all queued work on this device is done (no-op on CPU).</summary>
    void Synchronize();

    // ---------------------------------------------------------------- embedding  (kernels/embedding.cu)
    /// <summary>output (N, C) = weight[ids[n], :]. ids (N) i32, weight (V, C) row-dense view.</summary>
    void EmbeddingForward(Tensor ids, Tensor weight, Tensor output);
    /// <summary>dWeight[ids[n], :] += dOutput[n, :]. Repeated ids accumulate.</summary>
    void EmbeddingBackward(Tensor ids, Tensor dOutput, Tensor dWeight);

    // ---------------------------------------------------------------- layernorm  (kernels/layernorm.cu)
    /// <summary>Over rows of x (N, C): y = (x - mean) * rstd * weight + bias; saves mean (N) and rstd (N) = 1/sqrt(var + eps), biased
    /// variance.</summary>
    void LayerNormForward(Tensor x, Tensor weight, Tensor bias, float eps, Tensor y, Tensor mean, Tensor rstd);
    /// <summary>dx (N, C) +=, dWeight (C) +=, dBias (C) += the layernorm gradients, from the saved mean and rstd.</summary>
    void LayerNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, Tensor dx, Tensor dWeight, Tensor dBias);

    // ---------------------------------------------------------------- rmsnorm  (Llama family; kernels/rmsnorm.cu)
    /// <summary>
    /// RMSNorm over the last dimension C of x, computed as Hugging Face's LlamaRMSNorm does in f32: per row,
    /// rstd = 1/sqrt(mean(x²) + eps) (saved, accumulated in double), y = weight ⊙ (x · rstd). x is a matrix (N, C) with
    /// dense rows, or a (B, T, H, C) view with a dense last dimension (per-head QK-norm on q or k; rows then run over
    /// (b, t, h) in that order); y is contiguous with x's shape, rstd holds one value per row.
    /// </summary>
    void RmsNormForward(Tensor x, Tensor weight, float eps, Tensor y, Tensor rstd);
    /// <summary>
    /// dx (x's shape and layout kinds) +=, dWeight (C) += the RMSNorm gradients from the saved rstd: with x̂ = x · rstd
    /// and g = dy ⊙ weight, dx = rstd · (g − x̂ · mean(g ⊙ x̂)), dWeight = Σ_rows dy ⊙ x̂.
    /// </summary>
    void RmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight);

    // ---------------------------------------------------------------- matmul  (cuBLAS; Cpu/Gemm.cs)
    /// <summary>
    /// c (M, N) = alpha * op(a) @ op(b) + beta * c, then + bias (N) on every row when bias is given.
    /// op(a) is (M, K): a is (M, K), or (K, M) with transA. op(b) is (K, N): b is (K, N), or (N, K) with transB.
    /// A linear layer y = x @ W^T + b is MatMul(x, false, W, true, y, bias: b).
    /// </summary>
    void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f, Tensor? bias = null);
    /// <summary>dBias (N) += column sums of dy (M, N): a linear layer's bias gradient.</summary>
    void SumRows(Tensor dy, Tensor dBias);

    // ---------------------------------------------------------------- rotary  (kernels/rotary.cu)
    /// <summary>
    /// In place, GPT-NeoX "rotate half" on the first R = 2 * cos.Size(1) dims of every head of x (B, T, H, D)
    /// (a strided view, e.g. q inside the fused qkv buffer): with h = R/2, for i &lt; h,
    ///   x'[i] = x[i] cos[t,i] - x[i+h] sin[t,i],  x'[i+h] = x[i+h] cos[t,i] + x[i] sin[t,i].
    /// cos, sin: (T, R/2) tables for positions 0..T-1. Dims R..D-1 are untouched.
    /// </summary>
    void RotaryForward(Tensor x, Tensor cos, Tensor sin);
    /// <summary>In place on dx (B, T, H, D): the transpose of the rotation (rotation by -angle), turning the gradient of the rotated x into
    /// that of x.</summary>
    void RotaryBackward(Tensor dx, Tensor cos, Tensor sin);

    // ---------------------------------------------------------------- attention  (kernels/attention.cu; bf16: kernels/attention_mma.cu)
    /// <summary>
    /// Causal self-attention per (b, h): out[t] = sum_{s&lt;=t} softmax_s(scale * q[t].k[s]) v[s].
    /// q: (B, T, H, D), k, v: (B, T, KV, D) strided views, where KV divides H (grouped-query attention; KV = H is
    /// multi-head, KV = 1 multi-query): query head h reads kv head h / (H / KV). output (B, T, H, D) contiguous;
    /// lse (B, H, T) = log-sum-exp of the scaled scores of each row, saved for the backward pass.
    /// <paramref name="precision"/>: see <see cref="AttentionPrecision"/>.
    /// </summary>
    void AttentionForward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor lse, AttentionPrecision precision);
    /// <summary>
    /// dq (B, T, H, D), dk, dv (B, T, KV, D) strided views, accumulated, from dOut (B, T, H, D) and the forward's output
    /// and lse. A kv head's dk and dv are the sums over the H / KV query heads that read it.
    /// </summary>
    void AttentionBackward(
        Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, float scale, Tensor dq, Tensor dk, Tensor dv,
        AttentionPrecision precision);

    // ---------------------------------------------------------------- gelu  (kernels/gelu.cu)
    /// <summary>y = gelu(x), exact (x/2 (1 + erf(x/sqrt 2))) or the tanh approximation. Same shape, contiguous.</summary>
    void GeluForward(Tensor x, Tensor y, bool tanhApproximation);
    /// <summary>dx += dy * gelu'(x).</summary>
    void GeluBackward(Tensor dy, Tensor x, Tensor dx, bool tanhApproximation);

    // ---------------------------------------------------------------- swiglu  (Llama family; kernels/swiglu.cu)
    /// <summary>The gated MLP's activation y = silu(gate) ⊙ up, silu(g) = g · σ(g); gate, up, y (N, M) contiguous; y may be
    /// gate.</summary>
    void SwiGluForward(Tensor gate, Tensor up, Tensor y);
    /// <summary>dGate += dy ⊙ up ⊙ σ(g)(1 + g(1 − σ(g))), dUp += dy ⊙ silu(g), with g = gate; all (N, M) contiguous.</summary>
    void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp);

    // ---------------------------------------------------------------- elementwise  (kernels/elementwise.cu)
    /// <summary>y = a + b, contiguous, same shape; y may be a or b.</summary>
    void Add(Tensor a, Tensor b, Tensor y);
    /// <summary>y += alpha * x, same shape: contiguous, or 2-D row-dense views (a sub-network's weight gradient).</summary>
    void Axpy(float alpha, Tensor x, Tensor y);
    /// <summary>x *= alpha in place.</summary>
    void Scale(Tensor x, float alpha);

    // ---------------------------------------------------------------- fused no-grad ops  (evaluation; CPU: Cpu/CpuBackend.Fused.cs)
    // One pass over each row where the unfused forward makes two or three, for the no-grad path (Evaluation/EvalForward.cs):
    // nothing is saved for a backward pass. CUDA composes them from the kernels of the ops they fuse.

    /// <summary>
    /// The residual stream's add fused with the next norm: x (N, C) contiguous += delta (N, C) + deltaBias (C) in place
    /// (x + (delta + deltaBias), the unfused order; either may be null), then y (N, C) = layernorm(x) · weight + bias as
    /// <see cref="LayerNormForward"/> computes it (statistics not saved).
    /// </summary>
    void AddLayerNormForward(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, Tensor bias, float eps, Tensor y);
    /// <summary>As <see cref="AddLayerNormForward"/>, with y = RMSNorm(x) as <see cref="RmsNormForward"/> (x a matrix).</summary>
    void AddRmsNormForward(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, float eps, Tensor y);
    /// <summary>y (N, M) = gelu(x + bias) with bias (M) on every row (null: none), x and y contiguous; y may be x.</summary>
    void BiasGeluForward(Tensor x, Tensor? bias, Tensor y, bool tanhApproximation);

    // ---------------------------------------------------------------- cross-entropy  (kernels/crossentropy.cu)
    /// <summary>
    /// Fused softmax cross-entropy, one pass per row of logits (N, V), never holding probabilities:
    /// losses[n] = logsumexp(logits[n]) - logits[n, targets[n]]; when dLogits is given,
    /// dLogits[n] += gradScale * (softmax(logits[n]) - onehot(targets[n])).
    /// Rows whose target is ignoreIndex get loss 0 and no gradient. Targets outside [0, V) other than ignoreIndex are an error.
    /// </summary>
    void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor losses, Tensor? dLogits, float gradScale);

    // ---------------------------------------------------------------- distillation  (kernels/distillation.cu)
    /// <summary>
    /// Fused knowledge-distillation loss, per row of student logits s (N, V), one row read at a time and never holding
    /// a probability tensor: online log-sum-exp over the row, then a second read writing dStudent (JensenShannon against
    /// full teacher logits reads the row once more in between: log m needs both normalisers, so its sum has no online form).
    /// With a = s/τ, b = t/τ (τ = settings.Temperature), p = softmax(a) (student), q = softmax(b) (teacher):
    ///   losses[n, 0] = CE = logsumexp(s) - s[target]            (τ = 1, the student's own cross-entropy)
    ///   losses[n, 1] = KD = τ² · D(q, p), with D by settings.Kind:
    ///     ForwardKl  D = KL(q‖p) = Σ q (log q - log p)   (Hinton; PyTorch: kl_div(log_softmax(s/τ), softmax(t/τ)) · τ²)
    ///     ReverseKl  D = KL(p‖q) = Σ p (log p - log q)
    ///     Symmetric  D = ½ (KL(q‖p) + KL(p‖q))
    ///     JensenShannon  D = ½ KL(q‖m) + ½ KL(p‖m), m = ½ (p + q)   (symmetric in p and q, 0 ≤ D ≤ ln 2, finite even
    ///                where one side has zero mass)
    ///   dStudent[n] += gradScale · (α · (softmax(s) - onehot(target)) + β · ∂KD/∂s), where
    ///     ∂KD/∂s = τ · (p - q)                              for ForwardKl (τ² from the loss, 1/τ from a = s/τ:
    ///                                                        Hinton's τ² keeps the soft-target gradient's size independent of τ)
    ///     ∂KD/∂s = τ · p ⊙ (log p - log q - KL(p‖q))         for ReverseKl, and the mean of the two for Symmetric;
    ///     ∂KD/∂s = τ · ½ p ⊙ (u - Σ p u), u = log(p/m)         for JensenShannon. Derivation: treating p as free,
    ///        ∂D/∂p_i = ½ [log(p_i/m_i) + 1 - p_i/(2m_i)] - ½ q_i/(2m_i) = ½ log(p_i/m_i), since (p_i + q_i)/(2m_i) = 1;
    ///        the softmax Jacobian ∂p_i/∂a_j = p_i([i = j] - p_j) then gives ∂D/∂a_j = ½ p_j (u_j - Σ_i p_i u_i).
    ///        Computed as u = ln 2 - softplus(log q - log p), so no log of a sum of underflowed probabilities is taken.
    /// The teacher gets no gradient. losses (N, 2) hold the unweighted CE and KD; the weights α, β only scale the gradient.
    /// Rows whose target is settings.IgnoreIndex get CE = KD = 0 and no gradient (padding carries no teacher signal either).
    /// Targets outside [0, V) other than the ignore index are an error.
    ///
    /// Top-k teacher (<see cref="DistillTeacher.TopK"/>): the teacher is given only as its k largest log-probabilities at
    /// temperature τ, their ids (distinct, in [0, V)) and the remaining mass. The vocabulary is then k single-id buckets
    /// plus one tail bucket holding every other id; q_tail is the given mass, p_tail = Σ_{j not in the k ids} p_j, and D
    /// above is taken over the k + 1 buckets (a bucket with zero mass on the side that weights it adds 0). Its exact gradient
    /// is ∂KD/∂s_j = τ · p_j · (Q - q_B/p_B) for ForwardKl (Q = Σ over buckets of q, 1 up to rounding; B = j's bucket) and
    /// τ · p_j · (log p_B - log q_B - D) for ReverseKl. JensenShannon is sound on the buckets too: it is the JS divergence
    /// of the two bucket distributions (so still in [0, ln 2] and 0 when they agree), ∂D/∂p_B = ½ log(p_B/m_B) holds for
    /// each bucket whatever Σ q_B is (m_B is defined from the same q_B), and Σ_B p_B = 1 on the student side, so
    /// ∂KD/∂s_j = τ · ½ p_j (u_B - Σ_C p_C u_C), u_B = log(p_B/m_B); an empty bucket (p_B = q_B = 0) adds nothing.
    /// With k = V (tail 0) this is the full loss.
    /// </summary>
    void Distillation(
        Tensor studentLogits, DistillTeacher teacher, Tensor targets, in DistillSettings settings, Tensor losses, Tensor? dStudent);

    // ---------------------------------------------------------------- optimizer  (kernels/adamw.cu)
    /// <summary>
    /// One AdamW step over flat buffers param, grad, m, v (P): g = grad * gradScale; m = b1 m + (1-b1) g;
    /// v = b2 v + (1-b2) g^2; mhat = m / (1 - b1^step); vhat = v / (1 - b2^step);
    /// param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param), where wd = weightDecay for elements [0, decayCount) and 0 after
    /// (parameters are laid out decayed first, then biases and norms). step counts from 1.
    /// </summary>
    void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long decayCount, in AdamWSettings settings, int step, float gradScale);
    /// <summary>Sum of squares of every element of x (any shape, contiguous), read back to the host in double.</summary>
    double SumOfSquares(Tensor x);
    /// <summary>Sum of every element of x (contiguous), read back to the host in double.</summary>
    double Sum(Tensor x);
}

/// <summary>AdamW hyper-parameters (PyTorch's defaults except weight decay).</summary>
public readonly record struct AdamWSettings(
    float LearningRate, float Beta1 = 0.9f, float Beta2 = 0.95f, float Epsilon = 1e-8f, float WeightDecay = 0.1f);

/// <summary>Which divergence the distillation loss uses; see <see cref="IBackend.Distillation"/>.</summary>
public enum DistillKind { ForwardKl, ReverseKl, Symmetric, JensenShannon = KernelConstants.KindJensenShannon }

/// <summary>
/// Distillation loss settings: divergence, temperature τ (&gt; 0), CE weight α, KD weight β, the ignored target id and
/// the factor applied to every gradient (1 / rows for a mean).
/// </summary>
public readonly record struct DistillSettings(
    DistillKind Kind, float Temperature, float Alpha, float Beta, int IgnoreIndex = -100, float GradScale = 1f)
{
    /// <summary>Throws for a temperature that is not a positive finite number, an unknown kind or non-finite weights.</summary>
    public void Validate()
    {
        if (!(Temperature > 0) || !float.IsFinite(Temperature))
            throw new ArgumentOutOfRangeException(
            nameof(Temperature), $"distillation temperature must be a positive finite number, got {Temperature}");
        if (!Enum.IsDefined(Kind)) throw new ArgumentOutOfRangeException(nameof(Kind), $"unknown distillation kind {(int)Kind}");
        if (!float.IsFinite(Alpha) || !float.IsFinite(Beta) || !float.IsFinite(GradScale))
            throw new ArgumentException($"distillation weights must be finite (alpha {Alpha}, beta {Beta}, gradScale {GradScale})");
    }
}

/// <summary>
/// The teacher side of a distillation loss: either full logits (N, V), or a top-k summary at the loss's temperature:
/// TopLogProbs (N, k) f32 = log softmax(t/τ) at TopIds (N, k) i32 (distinct per row) and TailMass (N) f32 = the teacher's
/// probability outside those ids (given separately because 1 - Σ exp(top) loses it to rounding). All contiguous.
/// </summary>
public readonly record struct DistillTeacher
{
    public Tensor? Logits { get; private init; }
    public Tensor? TopLogProbs { get; private init; }
    public Tensor? TopIds { get; private init; }
    public Tensor? TailMass { get; private init; }
    public bool IsTopK => TopIds is not null;
    /// <summary>k for a top-k teacher, 0 for full logits.</summary>
    public int K => TopIds?.Size(1) ?? 0;

    public static DistillTeacher Full(Tensor logits) => new() { Logits = logits };
    public static DistillTeacher TopK(Tensor topLogProbs, Tensor topIds, Tensor tailMass) =>
        new() { TopLogProbs = topLogProbs, TopIds = topIds, TailMass = tailMass };

    /// <summary>Shape and dtype checks shared by the backends, for a student of (n, v).</summary>
    public void Check(int n, int v)
    {
        if (!IsTopK)
        {
            if (Logits is null) throw new ArgumentException("distillation: the teacher has neither logits nor a top-k summary");
            if (Logits.Rank != 2 || Logits.DType != DType.F32)
                throw new ArgumentException($"teacher logits: expected an f32 matrix, got {Logits.Describe()}");
            if (Logits.Size(1) != v)
                throw new ArgumentException($"teacher logits {Logits.Describe()} have vocabulary {Logits.Size(1)} but the student has {v}");
            ArgCheck.Shape(Logits, "teacher logits", n, v);
            return;
        }
        int k = TopIds!.Rank == 2 ? TopIds.Size(1) : -1;
        if (k <= 0 || k > v)
            throw new ArgumentOutOfRangeException("k", $"top-k teacher: k must be in [1, {v}] (the vocabulary), got {TopIds.Describe()}");
        if (TopIds.DType != DType.I32) throw new ArgumentException($"top-k teacher ids: i32 expected, got {TopIds.Describe()}");
        ArgCheck.Shape(TopIds, "top-k teacher ids", n, k); ArgCheck.Contiguous(TopIds, "top-k teacher ids");
        if (TopLogProbs!.DType != DType.F32)
            throw new ArgumentException($"top-k teacher log-probs: f32 expected, got {TopLogProbs.Describe()}");
        ArgCheck.Shape(TopLogProbs, "top-k teacher log-probs", n, k); ArgCheck.Contiguous(TopLogProbs, "top-k teacher log-probs");
        if (TailMass!.DType != DType.F32) throw new ArgumentException($"top-k teacher tail mass: f32 expected, got {TailMass.Describe()}");
        ArgCheck.Shape(TailMass, "top-k teacher tail mass", n); ArgCheck.Contiguous(TailMass, "top-k teacher tail mass");
    }
}

/// <summary>
/// The arithmetic of one attention call, passed with the call (a bf16 teacher and an f32 student share a backend).
/// F32: f32 throughout. Bf16: where the backend has tensor-core kernels for the head size (CUDA: 64 and 128 forward,
/// 64 backward) q, k, v, dO and the probabilities are rounded to bf16 at each mma input with f32 accumulation and
/// statistics; elsewhere (the CPU, other head sizes) the same f32 computation as F32.
/// </summary>
public enum AttentionPrecision { F32, Bf16 }
