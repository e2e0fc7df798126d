using Whittle.Native.Tensors;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Cpu;

/// <summary>
/// The fused distillation loss on the CPU (the math is IBackend.Distillation's doc comment). Policy: one row per task,
/// everything accumulated in double; a row is read three times (online log-sum-exp of s, s/τ and t/τ; the loss sums, which
/// need the log-sum-exps; the gradient, which for reverse KL needs the loss) and no probability row is ever stored.
/// A top-k teacher's tail is found with a per-row membership mask of the k ids.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>Floor on the teacher's tail mass inside a logarithm: a zero tail with a non-zero student tail would make reverse KL infinite.</summary>
    internal const double TailFloor = 1e-30;

    public void Distillation(Tensor studentLogits, DistillTeacher teacher, Tensor targets, in DistillSettings settings, Tensor losses, Tensor? dStudent)
    {
        settings.Validate();
        var (n, v) = ArgCheck.Matrix(studentLogits, nameof(studentLogits));
        teacher.Check(n, v);
        if (!teacher.IsTopK) ArgCheck.Matrix(teacher.Logits!, "teacher logits");
        if (ArgCheck.Vector(targets, DType.I32, nameof(targets)) != n) throw new ArgumentException($"targets has {targets.Count} entries for {n} rows of logits");
        ArgCheck.Shape(losses, nameof(losses), n, 2); ArgCheck.Contiguous(losses, nameof(losses));
        if (losses.DType != DType.F32) throw new ArgumentException($"losses: f32 expected, got {losses.Describe()}");
        if (dStudent is not null) { ArgCheck.Matrix(dStudent, nameof(dStudent)); ArgCheck.Shape(dStudent, nameof(dStudent), n, v); }
        int* pt = (int*)targets.Pointer;
        for (int i = 0; i < n; i++)
            if (pt[i] != settings.IgnoreIndex && (uint)pt[i] >= (uint)v) throw new ArgumentOutOfRangeException(nameof(targets), $"target {pt[i]} at row {i} is outside [0, {v}) and is not the ignore index {settings.IgnoreIndex}");
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
                    if ((uint)id >= (uint)v) throw new ArgumentOutOfRangeException(nameof(teacher), $"top-k teacher id {id} at row {i} is outside [0, {v})");
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
        Parallel.For(0, n, () => teacher.IsTopK ? new bool[v] : null, (i, _, inK) =>
        {
            int target = pt[i];
            if (target == s.IgnoreIndex) { po[2 * i] = 0; po[2 * i + 1] = 0; return inK; }
            var row = new DistillRow(ps + i * lds, v, s);
            if (teacher.IsTopK) row.TopK(plq + (long)i * k, pid + (long)i * k, k, ptail[i], inK!);
            else row.Full(pteach + i * ldt);
            po[2 * i] = (float)(row.LseCe - row.S[target]);
            po[2 * i + 1] = (float)(s.Temperature * (double)s.Temperature * row.D);
            if (pd != null) row.Gradient(pd + i * ldd, target);
            if (inK != null) for (int j = 0; j < k; j++) inK[pid[(long)i * k + j]] = false;
            return inK;
        }, _ => { });
    }

    /// <summary>One row's statistics: log-sum-exps, the divergence D and, for top-k, the bucket masses.</summary>
    ref struct DistillRow
    {
        public readonly float* S;
        readonly int _v;
        readonly DistillSettings _s;
        readonly double _invTau;
        public double LseCe, LseS;      // logsumexp(s), logsumexp(s/τ)
        double _lseT;                   // logsumexp(t/τ), full teacher
        float* _t;
        float* _lq; int* _ids; int _k; bool[]? _inK;
        double _qTail, _pTail, _q;      // teacher tail mass, student tail mass, Σ of teacher bucket masses
        double _fwd, _rev;              // KL(q‖p), KL(p‖q)
        public double D;

        public DistillRow(float* s, int v, DistillSettings settings)
        {
            S = s; _v = v; _s = settings; _invTau = 1.0 / settings.Temperature;
            // online log-sum-exp of s and s/τ in one read
            double m1 = double.NegativeInfinity, z1 = 0, m2 = double.NegativeInfinity, z2 = 0;
            for (int j = 0; j < v; j++)
            {
                double x = s[j], a = x * _invTau;
                if (x > m1) { z1 = z1 * Math.Exp(m1 - x) + 1; m1 = x; } else z1 += Math.Exp(x - m1);
                if (a > m2) { z2 = z2 * Math.Exp(m2 - a) + 1; m2 = a; } else z2 += Math.Exp(a - m2);
            }
            LseCe = m1 + Math.Log(z1); LseS = m2 + Math.Log(z2);
        }

        double LogP(int j) => S[j] * _invTau - LseS;

        public void Full(float* t)
        {
            _t = t; _q = 1;
            double m = double.NegativeInfinity, z = 0;
            for (int j = 0; j < _v; j++)
            {
                double b = t[j] * _invTau;
                if (b > m) { z = z * Math.Exp(m - b) + 1; m = b; } else z += Math.Exp(b - m);
            }
            _lseT = m + Math.Log(z);
            double f = 0, r = 0;
            for (int j = 0; j < _v; j++)
            {
                double lp = LogP(j), lq = t[j] * _invTau - _lseT;
                f += Math.Exp(lq) * (lq - lp);
                r += Math.Exp(lp) * (lp - lq);
            }
            Finish(f, r);
        }

        public void TopK(float* lq, int* ids, int k, float tail, bool[] inK)
        {
            _lq = lq; _ids = ids; _k = k; _inK = inK; _qTail = tail;
            for (int i = 0; i < k; i++) inK[ids[i]] = true;
            double pTail = 0;
            for (int j = 0; j < _v; j++) if (!inK[j]) pTail += Math.Exp(LogP(j));
            _pTail = pTail;
            double f = 0, r = 0, q = tail;
            for (int i = 0; i < k; i++)
            {
                double lp = LogP(ids[i]), lqi = lq[i], qi = Math.Exp(lqi);
                q += qi;
                f += qi * (lqi - lp);
                r += Math.Exp(lp) * (lp - lqi);
            }
            double logQt = Math.Log(Math.Max(tail, TailFloor));
            if (tail > 0) f += tail * (logQt - Math.Log(pTail));
            if (pTail > 0) r += pTail * (Math.Log(pTail) - logQt);
            _q = q;
            Finish(f, r);
        }

        void Finish(double f, double r)
        {
            _fwd = f; _rev = r;
            D = _s.Kind switch { DistillKind.ForwardKl => f, DistillKind.ReverseKl => r, _ => 0.5 * (f + r) };
        }

        /// <summary>
        /// ∂D/∂a_j (a = s/τ) of element j with probability pj, in a bucket with teacher mass qB (log lqB), student log-mass lpB,
        /// and share = p_j / p_B (1 for a single-id bucket, so an underflowed p_j still gets its -q_j).
        /// </summary>
        double DivergenceGrad(double pj, double share, double qB, double lqB, double lpB)
        {
            double fwd = pj * _q - share * qB;   // p_j (Q - q_B / p_B)
            double rev = pj * (lpB - lqB - _rev);
            return _s.Kind switch { DistillKind.ForwardKl => fwd, DistillKind.ReverseKl => rev, _ => 0.5 * (fwd + rev) };
        }

        public void Gradient(float* d, int target)
        {
            double ce = _s.GradScale * (double)_s.Alpha, kd = _s.GradScale * (double)_s.Beta * _s.Temperature;
            if (_t != null)
                for (int j = 0; j < _v; j++)
                {
                    double lp = LogP(j), lq = _t[j] * _invTau - _lseT, pj = Math.Exp(lp);
                    d[j] += (float)(ce * Math.Exp(S[j] - LseCe) + kd * DivergenceGrad(pj, 1, Math.Exp(lq), lq, lp));
                }
            else
            {
                double lpTail = Math.Log(_pTail), lqTail = Math.Log(Math.Max(_qTail, TailFloor));
                for (int j = 0; j < _v; j++)
                {
                    double g = ce * Math.Exp(S[j] - LseCe);
                    if (!_inK![j])
                    {
                        double pj = Math.Exp(LogP(j));
                        g += kd * DivergenceGrad(pj, _pTail > 0 ? pj / _pTail : 0, _qTail, lqTail, lpTail);
                    }
                    d[j] += (float)g;
                }
                for (int i = 0; i < _k; i++)
                {
                    int j = _ids[i];
                    double lp = LogP(j), pj = Math.Exp(lp);
                    d[j] += (float)(kd * DivergenceGrad(pj, 1, Math.Exp(_lq[i]), _lq[i], lp));
                }
            }
            d[target] -= (float)ce;
        }
    }
}
