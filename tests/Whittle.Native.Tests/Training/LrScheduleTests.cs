using Whittle.Native.Training;

namespace Whittle.Native.Tests.Training;

/// <summary>Schedules against values worked out by hand. Tolerances: the schedule is a few f32 operations (a cosine in
/// double, rounded to f32 once) on values ≤ 1, so 1e-6 is ~10 roundings of 2^-24; no GEMM or CPU-specific path is involved.</summary>
public class LrScheduleTests
{
    [Test]
    public void CosineWarmsUpLinearlyThenFollowsHalfACosineToTheFloor()
    {
        var s = new LrSchedule(ScheduleKind.Cosine, 1.0f, 0.1f, WarmupSteps: 10, TotalSteps: 110);
        Assert.That(s.At(5), Is.EqualTo(0.5f).Within(1e-6));
        Assert.That(s.At(10), Is.EqualTo(1.0f).Within(1e-6));
        Assert.That(s.At(60), Is.EqualTo(0.55f).Within(1e-6), "halfway: (max + min) / 2");
        Assert.That(s.At(110), Is.EqualTo(0.1f).Within(1e-6));
        Assert.That(s.At(35), Is.EqualTo(0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI / 4))).Within(1e-6));
    }

    [Test]
    public void WsdHoldsThePeakThenDecaysLinearlyOverTheLastFraction()
    {
        var s = new LrSchedule(ScheduleKind.Wsd, 2.0f, 0.0f, WarmupSteps: 4, TotalSteps: 100, DecayFraction: 0.2f);
        Assert.That(s.At(2), Is.EqualTo(1.0f).Within(1e-6));
        Assert.That(s.At(50), Is.EqualTo(2.0f));
        Assert.That(s.At(80), Is.EqualTo(2.0f), "the stable phase ends where the last 20% begins");
        Assert.That(s.At(90), Is.EqualTo(1.0f).Within(1e-6));
        Assert.That(s.At(100), Is.EqualTo(0.0f).Within(1e-6));
    }

    [Test]
    public void InconsistentRatesAreRefused()
    {
        Assert.That(() => new LrSchedule(ScheduleKind.Cosine, 1e-3f, 1e-2f, 0, 10).Validate(), Throws.InstanceOf<WhittleException>());
        Assert.That(
            () => new LrSchedule(ScheduleKind.Wsd, 1e-3f, 0, 0, 10, DecayFraction: 0).Validate(), Throws.InstanceOf<WhittleException>());
    }
}
