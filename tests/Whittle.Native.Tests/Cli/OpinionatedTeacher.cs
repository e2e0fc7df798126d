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
    /// <summary>The random model of <paramref name="config"/> (either family) and <paramref name="seed"/>, as a new run makes it.</summary>
    public static LanguageModel Random(ModelConfig config, ulong seed) => config switch
    {
        GptNeoXConfig g => GptNeoX.CreateRandom(g, CpuBackend.Instance, seed),
        LlamaConfig l => Llama.CreateRandom(l, CpuBackend.Instance, seed),
        _ => throw new ArgumentException(config.GetType().Name),
    };

    /// <summary>Saves the random model of <paramref name="config"/> and <paramref name="seed"/>, output projection ×100.</summary>
    public static void Save(ModelConfig config, ulong seed, string dir)
    {
        using var m = Random(config, seed);
        var info = m.Parameters.Info(m.HeadName);
        foreach (ref float w in m.Parameters.Flat.AsSpan<float>().Slice((int)info.Offset, (int)info.Count)) w *= 100f;
        ModelCheckpoint.Save(m, dir, extraFiles: [TestData.TokenizerPath]);
    }
}
