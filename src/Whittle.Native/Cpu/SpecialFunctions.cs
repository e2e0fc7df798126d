namespace Whittle.Native.Cpu;

/// <summary>
/// Special functions the CPU reference needs and .NET lacks. Accuracy first (this is the ground truth that the CUDA
/// kernels' erff is compared with): erf to about 1e-15 absolute in double.
/// </summary>
public static class SpecialFunctions
{
    const double TwoOverSqrtPi = 1.1283791670955126;
    const double InvSqrtPi = 0.5641895835477563;

    /// <summary>
    /// erf with absolute error below 1.5e-7 (Abramowitz &amp; Stegun 7.1.26), evaluated in double: the GELU kernels'
    /// working precision, since GELU's output is f32 and 1.5e-7 is about one f32 ulp at 1. Some 20× faster than <see cref="Erf"/>.
    /// </summary>
    public static double ErfFast(double x)
    {
        double ax = Math.Abs(x);
        double t = 1.0 / (1.0 + 0.3275911 * ax);
        double poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
        double r = 1.0 - poly * Math.Exp(-ax * ax);
        return x < 0 ? -r : r;
    }

    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double ax = Math.Abs(x);
        if (ax < 2.5) return ErfSeries(x);
        if (ax > 6.0) return Math.Sign(x);      // erfc(6) < 3e-17: erf is ±1 in double
        double r = 1.0 - ErfcContinuedFraction(ax);
        return x < 0 ? -r : r;
    }

    // Maclaurin series erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1)); for |x| < 2.5 the largest term is ~20,
    // so cancellation costs at most two of double's sixteen digits.
    static double ErfSeries(double x)
    {
        double x2 = x * x, term = x, sum = x;
        for (int n = 1; n < 80; n++)
        {
            term *= -x2 / n;
            double add = term / (2 * n + 1);
            sum += add;
            if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
        }
        return TwoOverSqrtPi * sum;
    }

    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))), evaluated bottom-up; for x >= 2.5
    // 60 levels converge far below double precision.
    static double ErfcContinuedFraction(double x)
    {
        double f = x;
        for (int k = 60; k >= 1; k--) f = x + (k / 2.0) / f;
        return Math.Exp(-x * x) * InvSqrtPi / f;
    }
}
