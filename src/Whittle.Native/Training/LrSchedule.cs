namespace Whittle.Native.Training;

public enum ScheduleKind { Cosine, Wsd, Constant }

/// <summary>
/// Learning rate as a function of the step (counted from 1):
/// <list type="bullet">
/// <item>cosine: linear warmup from 0 to MaxLr over WarmupSteps, then cosine from MaxLr down to MinLr at TotalSteps;</item>
/// <item>wsd (warmup–stable–decay): warmup, then MaxLr held, then a linear decay to MinLr over the last DecayFraction of the steps;</item>
/// <item>constant: warmup, then MaxLr.</item>
/// </list>
/// A pure function of the step, so resuming needs only the step.
/// </summary>
public sealed record LrSchedule(ScheduleKind Kind, float MaxLr, float MinLr, int WarmupSteps, int TotalSteps, float DecayFraction = 0.2f)
{
    public LrSchedule Validate()
    {
        if (MaxLr <= 0 || MinLr < 0 || MinLr > MaxLr)
            throw new WhittleException($"learning rates must satisfy 0 <= min ({MinLr}) <= max ({MaxLr}), max > 0");
        if (WarmupSteps < 0 || TotalSteps < 1)
            throw new WhittleException($"warmup ({WarmupSteps}) must be >= 0 and total steps ({TotalSteps}) >= 1");
        if (DecayFraction is <= 0 or > 1) throw new WhittleException($"the WSD decay fraction must be in (0, 1], got {DecayFraction}");
        return this;
    }

    public float At(int step)
    {
        if (step <= WarmupSteps) return MaxLr * step / Math.Max(1, WarmupSteps);
        switch (Kind)
        {
            case ScheduleKind.Constant: return MaxLr;
            case ScheduleKind.Cosine:
            {
                double progress = Math.Clamp((double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps), 0, 1);
                return (float)(MinLr + 0.5 * (MaxLr - MinLr) * (1 + Math.Cos(Math.PI * progress)));
            }
            case ScheduleKind.Wsd:
            {
                int decaySteps = Math.Max(1, (int)Math.Round(TotalSteps * DecayFraction));
                int decayStart = TotalSteps - decaySteps;
                if (step <= decayStart) return MaxLr;
                double progress = Math.Clamp((double)(step - decayStart) / decaySteps, 0, 1);
                return (float)(MaxLr + (MinLr - MaxLr) * progress);
            }
            default: throw new ArgumentOutOfRangeException(nameof(Kind));
        }
    }

    public static ScheduleKind ParseKind(string s) => s.ToLowerInvariant() switch
    {
        "cosine" => ScheduleKind.Cosine,
        "wsd" => ScheduleKind.Wsd,
        "constant" => ScheduleKind.Constant,
        _ => throw new WhittleException($"unknown schedule '{s}' (expected cosine, wsd or constant)"),
    };
}
