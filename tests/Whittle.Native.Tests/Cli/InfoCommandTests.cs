using System.Text.Json.Nodes;

namespace Whittle.Native.Tests.Cli;

public class InfoCommandTests
{
    [Test]
    public void JsonReportsCountsThatAddUpToTheCheckpoint()
    {
        var (exit, stdout, stderr) = CliRunner.Run("info", CliRunner.Fixture("tiny-neox"), "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var o = JsonNode.Parse(stdout)!;
        // Independent count: the fixture's safetensors hold every parameter as F32, so bytes = 4 × total + header.
        long total = o["parameters"]!["total"]!.GetValue<long>();
        long bytes = o["bytes"]!.GetValue<long>();
        Assert.That(bytes - 4 * total, Is.InRange(8, 8192), "file = 8-byte length + JSON header + 4 bytes per parameter");
        Assert.That(o["parameters"]!["embedding"]!.GetValue<long>(), Is.EqualTo(2 * 96 * 64), "embed_in + embed_out, V × d each");
        Assert.That(o["dtype"]!.AsArray().Select(x => x!.GetValue<string>()), Is.EqualTo(new[] { "f32" }));
    }

    [Test]
    public void TextOutputNamesTheArchitecture()
    {
        var (exit, stdout, _) = CliRunner.Run("info", CliRunner.Fixture("tiny-neox-seq"));
        Assert.That(exit, Is.EqualTo(0));
        Assert.That(stdout, Does.Contain("GPT-NeoX, 2 layers, hidden 64, 4 heads × 16").And.Contain("sequential residual"));
    }

    [Test]
    public void ABrokenModelDirectoryIsOneLineAndANonZeroExit()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-info-").FullName;
        try
        {
            File.Copy(Path.Combine(CliRunner.Fixture("tiny-neox"), "config.json"), Path.Combine(dir, "config.json"));
            var model = File.ReadAllBytes(Path.Combine(CliRunner.Fixture("tiny-neox"), "model.safetensors"));
            File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), model[..(model.Length / 2)]);   // truncated
            var (exit, stdout, stderr) = CliRunner.Run("info", dir);
            Assert.That(exit, Is.Not.EqualTo(0));
            Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
            Assert.That(stderr, Does.Contain("model.safetensors"));
            var verbose = CliRunner.Run("info", dir, "--verbose");
            Assert.That(verbose.Stderr, Does.Contain(" at "), "--verbose prints the stack trace");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void AConfigThatDisagreesWithTheWeightsNamesTheTensor()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-info-").FullName;
        try
        {
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(CliRunner.Fixture("tiny-neox"), "config.json")))!;
            cfg["intermediate_size"] = 80;
            File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
            File.Copy(Path.Combine(CliRunner.Fixture("tiny-neox"), "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            var (exit, _, stderr) = CliRunner.Run("info", dir);
            Assert.That(exit, Is.EqualTo(1));
            Assert.That(stderr, Does.Contain("gpt_neox.layers.0.mlp.dense_h_to_4h.weight").And.Contain("(72, 64)").And.Contain("(80, 64)"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void AnotherArchitectureIsRefusedByName()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-info-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"),
                """{"model_type": "gemma", "architectures": ["GemmaForCausalLM"], "vocab_size": 10}""");
            var (exit, _, stderr) = CliRunner.Run("info", dir);
            Assert.That(exit, Is.EqualTo(1));
            Assert.That(stderr, Does.Contain("unsupported architecture").And.Contain("gemma"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
