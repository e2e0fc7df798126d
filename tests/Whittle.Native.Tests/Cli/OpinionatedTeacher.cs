using Whittle.Native.Cpu;
using Whittle.Native.Model;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// A teacher for distillation tests. A random init is nearly uniform over 4096 tokens (KD ~ 1e-4); a 100× output
/// projection gives it opinions (logits of std ~10), so its top-k carry real mass and the KD term is large enough that a
/// wrong batch, k or distribution shows.
/// </summary>
static class OpinionatedTeacher
{
    /// <summary>Saves the random model of <paramref name="config"/> and <paramref name="seed"/>, output projection ×100.</summary>
    public static void Save(GptNeoXConfig config, ulong seed, string dir)
    {
        using var m = GptNeoX.CreateRandom(config, CpuBackend.Instance, seed);
        var info = m.Parameters.Info(GptNeoX.EmbedOut);
        foreach (ref float w in m.Parameters.Flat.AsSpan<float>().Slice((int)info.Offset, (int)info.Count)) w *= 100f;
        GptNeoXCheckpoint.Save(m, dir, extraFiles: [TestData.TokenizerPath]);
    }
}
