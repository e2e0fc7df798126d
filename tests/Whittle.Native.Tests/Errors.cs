namespace Whittle.Native.Tests;

/// <summary>Error measures shared by the reference-fixture tests.</summary>
static class Errors
{
    /// <summary>
    /// max |ours − expected| / max |expected| over a tensor: robust where some entries are exactly zero in exact arithmetic
    /// (an element-wise relative error would compare round-off with round-off).
    /// </summary>
    public static double Scaled(float[] ours, float[] expected)
    {
        Assert.That(ours.Length, Is.EqualTo(expected.Length));
        double err = 0, scale = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            err = Math.Max(err, Math.Abs(ours[i] - (double)expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        return err / scale;
    }
}
