using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using Whittle.Native.Tensors;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Cpu;

/// <summary>
/// The fused distillation loss on the CPU (the math is IBackend.Distillation's doc comment). Policy: one row per task,
/// everything in double, computed as whole-row vector passes over a worker's (V) double scratch rows (log p, p, log q,
/// q, softmax(s)): a few hundred KiB per worker, never an (N, V) probability tensor. A top-k teacher's tail mass is summed
/// directly over the ids outside the k (no 1 − Σ top cancellation). Jensen–Shannon takes its own path (it is no mix of the
/// two KLs) over the same rows.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>Floor on the teacher's tail mass inside a logarithm: a zero tail with a non-zero student tail would make reverse KL
    /// infinite.</summary>
    internal const double TailFloor = KernelConstants.TailFloor;   // as distillation.cu

    public void Distillation(
        Tensor studentLogits, DistillTeacher teacher, Tensor targets, in DistillSettings settings, Tensor losses, Tensor? dStudent)
    {
        settings.Validate();
        var (n, v) = ArgCheck.Matrix(studentLogits, nameof(studentLogits));
        teacher.Check(n, v);
        if (!teacher.IsTopK) ArgCheck.Matrix(teacher.Logits!, "teacher logits");
        if (ArgCheck.Vector(targets, DType.I32, nameof(targets)) != n)
            throw new ArgumentException($"targets has {targets.Count} entries for {n} rows of logits");
        ArgCheck.Shape(losses, nameof(losses), n, 2); ArgCheck.Contiguous(losses, nameof(losses));
        if (losses.DType != DType.F32) throw new ArgumentException($"losses: f32 expected, got {losses.Describe()}");
        if (dStudent is not null) { ArgCheck.Matrix(dStudent, nameof(dStudent)); ArgCheck.Shape(dStudent, nameof(dStudent), n, v); }
        int* pt = (int*)targets.Pointer;
        for (int i = 0; i < n; i++)
            if (pt[i] != settings.IgnoreIndex && (uint)pt[i] >= (uint)v)
                throw new ArgumentOutOfRangeException(
                nameof(targets), $"target {pt[i]} at row {i} is outside [0, {v}) and is not the ignore index {settings.IgnoreIndex}");
        int k = teacher.K;
        if (teacher.IsTopK)
        {
            int* ids = (int*)teacher.TopIds!.Pointer;
            var seen = new bool[v];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < k; j++)
                {
                    int id = ids[(long)i * k + j];
                    if ((uint)id >= (uint)v)
                        throw new ArgumentOutOfRangeException(nameof(teacher), $"top-k teacher id {id} at row {i} is outside [0, {v})");
                    if (seen[id]) throw new ArgumentException($"top-k teacher ids repeat {id} at row {i}");
                    seen[id] = true;
                }
                for (int j = 0; j < k; j++) seen[ids[(long)i * k + j]] = false;
            }
        }

        var s = settings;
        float* ps = (float*)studentLogits.Pointer; long lds = studentLogits.Stride(0);
        float* pteach = teacher.IsTopK ? null : (float*)teacher.Logits!.Pointer; long ldt = teacher.IsTopK ? 0 : teacher.Logits!.Stride(0);
        float* plq = teacher.IsTopK ? (float*)teacher.TopLogProbs!.Pointer : null;
        int* pid = teacher.IsTopK ? (int*)teacher.TopIds!.Pointer : null;
        float* ptail = teacher.IsTopK ? (float*)teacher.TailMass!.Pointer : null;
        float* po = (float*)losses.Pointer;
        float* pd = dStudent is null ? null : (float*)dStudent.Pointer; long ldd = dStudent?.Stride(0) ?? 0;
        Parallel.For(0, n, () => new DistillScratch(v), (i, _, w) =>
        {
            int target = pt[i];
            if (target == s.IgnoreIndex) { po[2 * i] = 0; po[2 * i + 1] = 0; return w; }
            float* grad = pd == null ? null : pd + i * ldd;
            if (teacher.IsTopK) w.TopK(ps + i * lds, plq + (long)i * k, pid + (long)i * k, k, ptail[i], s, target, po + 2 * i, grad);
            else w.Full(ps + i * lds, pteach + i * ldt, s, target, po + 2 * i, grad);
            return w;
        }, _ => { });
    }

    /// <summary>
    /// One worker's (V) double rows and the computation of one row in whole-row vector passes (TensorPrimitives over
    /// double spans: its Exp is within an ulp of Math.Exp). Rows: S = s, Ce = softmax(s), LogP = log p, P = p,
    /// LogQ = log q, Q = q, and two scratch rows. The teacher's log q goes through the very same operations as the
    /// student's log p, so a teacher equal to the student gives KD = 0 and a zero KD gradient exactly.
    /// </summary>
    sealed class DistillScratch(int v)
    {
        readonly double[] _s = new double[v], _ce = new double[v], _logP = new double[v], _p = new double[v], _logQ = new double[v],
            _q = new double[v];
        readonly double[] _t0 = new double[v], _t1 = new double[v], _t2 = new double[v];
        static readonly double Ln2 = Math.Log(2);

        /// <summary>log Σ exp(x), using tmp for exp(x − max); returns also Σ exp(x − max).</summary>
        static double LogSumExp(ReadOnlySpan<double> x, Span<double> tmp, out double max, out double sum)
        {
            max = TensorPrimitives.Max(x);
            TensorPrimitives.Subtract(x, max, tmp);
            TensorPrimitives.Exp(tmp, tmp);
            sum = TensorPrimitives.Sum(tmp);
            return max + Math.Log(sum);
        }

        /// <summary>logits (V) → out log softmax(logits / τ) and its exponential.</summary>
        void LogSoftmax(float* logits, double invTau, Span<double> log, Span<double> prob)
        {
            HostVectors.WidenScaled(logits, invTau, log);
            double lse = LogSumExp(log, _t0, out _, out _);
            TensorPrimitives.Subtract(log, lse, log);
            TensorPrimitives.Exp(log, prob);
        }

        /// <summary>S, Ce, LogP, P for student row s; returns the CE loss logsumexp(s) − s[target].</summary>
        double Student(float* s, in DistillSettings settings, int target)
        {
            HostVectors.WidenScaled(s, 1.0, _s);
            double lse = LogSumExp(_s, _ce, out _, out double sum);
            TensorPrimitives.Multiply(_ce, 1.0 / sum, _ce);
            LogSoftmax(s, 1.0 / settings.Temperature, _logP, _p);
            return lse - _s[target];
        }

        static double Pick(DistillKind kind, double fwd, double rev) =>
            kind switch { DistillKind.ForwardKl => fwd, DistillKind.ReverseKl => rev, DistillKind.Symmetric => 0.5 * (fwd + rev),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), $"{kind} has no forward/reverse KL mix") };

        /// <summary>d += (float)(g + ce·softmax(s)) row-wise, then d[target] −= ce: g holds the KD part, already weighted.</summary>
        void Write(float* d, Span<double> g, double ce, int target)
        {
            TensorPrimitives.MultiplyAdd(_ce, ce, g, g);
            HostVectors.AddNarrowed(g, d);
            d[target] -= (float)ce;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Full(float* s, float* t, in DistillSettings settings, int target, float* losses, float* d)
        {
            double ce = Student(s, settings, target);
            LogSoftmax(t, 1.0 / settings.Temperature, _logQ, _q);
            if (settings.Kind == DistillKind.JensenShannon) { FullJs(settings, target, ce, losses, d); return; }
            var diff = _t1.AsSpan();
            TensorPrimitives.Subtract(_logP, _logQ, diff);                 // log p − log q
            double fwd = -TensorPrimitives.Dot(_q, diff), rev = TensorPrimitives.Dot(_p, diff);
            double kl = Pick(settings.Kind, fwd, rev);
            losses[0] = (float)ce;
            losses[1] = (float)(settings.Temperature * (double)settings.Temperature * kl);
            if (d == null) return;
            double wCe = settings.GradScale * (double)settings.Alpha,
                wKd = settings.GradScale * (double)settings.Beta * settings.Temperature;
            // ∂D/∂a: forward p − q, reverse p ⊙ (log p − log q − KL(p‖q)), symmetric their mean.
            var g = _t0.AsSpan();
            if (settings.Kind != DistillKind.ReverseKl) TensorPrimitives.Subtract(_p, _q, g);
            if (settings.Kind != DistillKind.ForwardKl)
            {
                TensorPrimitives.Subtract(diff, rev, diff);
                TensorPrimitives.Multiply(diff, _p, diff);
                if (settings.Kind == DistillKind.ReverseKl) diff.CopyTo(g);
                else { TensorPrimitives.Add(g, diff, g); TensorPrimitives.Multiply(g, 0.5, g); }
            }
            TensorPrimitives.Multiply(g, wKd, g);
            Write(d, g, wCe, target);
        }

        /// <summary>
        /// Jensen–Shannon against full teacher rows (LogP, P, LogQ, Q filled): u = log(p/m) = ln 2 − softplus(log q − log p)
        /// and log(q/m) = u + log q − log p, both from finite log-probabilities, so underflowed p or q cost nothing.
        /// </summary>
        void FullJs(in DistillSettings settings, int target, double ce, float* losses, float* d)
        {
            var delta = _t1.AsSpan(); var u = _t0.AsSpan(); var tmp = _t2.AsSpan();
            TensorPrimitives.Subtract(_logQ, _logP, delta);            // log q − log p
            TensorPrimitives.Abs(delta, u);                             // softplus(δ) = max(δ, 0) + log(1 + e^−|δ|)
            TensorPrimitives.Negate(u, u);
            TensorPrimitives.Exp(u, u);
            TensorPrimitives.Add(u, 1.0, u);
            TensorPrimitives.Log(u, u);
            TensorPrimitives.Max(delta, 0.0, tmp);
            TensorPrimitives.Add(u, tmp, u);
            TensorPrimitives.Subtract(Ln2, u, u);                      // u = log(p/m)
            double r = TensorPrimitives.Dot(_p, u);                     // KL(p‖m)
            TensorPrimitives.Add(u, delta, tmp);                        // log(q/m)
            double f = TensorPrimitives.Dot(_q, tmp);                   // KL(q‖m)
            losses[0] = (float)ce;
            losses[1] = (float)(settings.Temperature * (double)settings.Temperature * 0.5 * (f + r));
            if (d == null) return;
            double wCe = settings.GradScale * (double)settings.Alpha,
                wKd = settings.GradScale * (double)settings.Beta * settings.Temperature;
            TensorPrimitives.Subtract(u, r, u);                         // ∂D/∂a = ½ p ⊙ (u − KL(p‖m))
            TensorPrimitives.Multiply(u, _p, u);
            TensorPrimitives.Multiply(u, 0.5 * wKd, u);
            Write(d, u, wCe, target);
        }

        /// <summary>One bucket's Jensen–Shannon terms (p·log(p/m), q·log(q/m)) and u = log(p/m), with the zero-mass cases exact.</summary>
        static (double P, double Q, double U) JsBucket(double logP, double logQ, double p, double q)
        {
            if (p == 0) return (0, q * Ln2, 0);           // m = q/2; no member of the bucket has a gradient
            if (q == 0) return (p * Ln2, 0, Ln2);         // m = p/2
            double delta = logQ - logP, u = Ln2 - (Math.Max(delta, 0) + Math.Log(1 + Math.Exp(-Math.Abs(delta))));
            return (p * u, q * (u + delta), u);
        }

        /// <summary>Jensen–Shannon over the k single-id buckets and the tail bucket (student mass pTail, teacher mass tail).</summary>
        void TopKJs(
            float* lq, int* ids, int k, float tail, double pTail, in DistillSettings settings, int target, double ce,
            float* losses, float* d)
        {
            double f = 0, r = 0;
            for (int i = 0; i < k; i++)
            {
                var b = JsBucket(_logP[ids[i]], lq[i], _p[ids[i]], Math.Exp(lq[i]));
                f += b.Q; r += b.P;
            }
            var tb = JsBucket(
                pTail > 0 ? Math.Log(pTail) : double.NegativeInfinity, tail > 0 ? Math.Log(tail) : double.NegativeInfinity, pTail, tail);
            f += tb.Q; r += tb.P;
            losses[0] = (float)ce;
            losses[1] = (float)(settings.Temperature * (double)settings.Temperature * 0.5 * (f + r));
            if (d == null) return;
            double wCe = settings.GradScale * (double)settings.Alpha,
                wKd = settings.GradScale * (double)settings.Beta * settings.Temperature;
            var g = _t0.AsSpan();
            TensorPrimitives.Multiply(_p, 0.5 * wKd * (tb.U - r), g);
            for (int i = 0; i < k; i++)
            {
                int j = ids[i];
                g[j] = 0.5 * wKd * _p[j] * (JsBucket(_logP[j], lq[i], _p[j], Math.Exp(lq[i])).U - r);
            }
            Write(d, g, wCe, target);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void TopK(float* s, float* lq, int* ids, int k, float tail, in DistillSettings settings, int target, float* losses, float* d)
        {
            double ce = Student(s, settings, target);
            var rest = _t1.AsSpan();
            _p.CopyTo(rest);
            for (int i = 0; i < k; i++) rest[ids[i]] = 0;
            double pTail = TensorPrimitives.Sum(rest);
            if (settings.Kind == DistillKind.JensenShannon) { TopKJs(lq, ids, k, tail, pTail, settings, target, ce, losses, d); return; }
            double f = 0, r = 0, q = tail;
            for (int i = 0; i < k; i++)
            {
                double lp = _logP[ids[i]], lqi = lq[i], qi = Math.Exp(lqi);
                q += qi;
                f += qi * (lqi - lp);
                r += _p[ids[i]] * (lp - lqi);
            }
            double logQt = Math.Log(Math.Max(tail, TailFloor)), logPt = Math.Log(pTail);
            if (tail > 0) f += tail * (logQt - logPt);
            if (pTail > 0) r += pTail * (logPt - logQt);
            losses[0] = (float)ce;
            losses[1] = (float)(settings.Temperature * (double)settings.Temperature * Pick(settings.Kind, f, r));
            if (d == null) return;
            double wCe = settings.GradScale * (double)settings.Alpha,
                wKd = settings.GradScale * (double)settings.Beta * settings.Temperature;
            // Tail ids: ∂D/∂a_j = p_j · c with one c for the whole bucket: forward Q − q_B/p_B, reverse log p_B − log q_B − KL(p‖q)
            // (0 when p_B = 0: every p_j of the bucket is then 0).
            double cTail = Pick(settings.Kind, pTail > 0 ? q - tail / pTail : q, pTail > 0 ? logPt - logQt - r : 0);
            var g = _t0.AsSpan();
            TensorPrimitives.Multiply(_p, wKd * cTail, g);
            for (int i = 0; i < k; i++)   // single-id buckets: forward p_j Q − q_j, reverse p_j (log p_j − log q_j − KL(p‖q))
            {
                int j = ids[i];
                double pj = _p[j];
                g[j] = wKd * Pick(settings.Kind, pj * q - Math.Exp(lq[i]), pj * (_logP[j] - lq[i] - r));
            }
            Write(d, g, wCe, target);
        }
    }
}
