// Policy: one regression test per class of hostile or malformed input from issue 14 (items 2–4). Each runs the
// command a user would (in-process through CliCommon.Run: same parser, handlers and exit-code mapping as the binary;
// the dataset-overflow case in a separate process, since its old failure was a read outside a memory mapping) and
// asserts the error contract: exit 1, one line, naming the file and the field, tensor or option.
using System.Text.Json.Nodes;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tests.Fuzz;

namespace Whittle.Native.Tests.Cli;

[NonParallelizable]   // InProcessCli captures the process-wide console
public class UntrustedInputTests
{
    static FuzzWorld W => FuzzWorld.Instance;

    static string UserError(params string[] args) => InProcessCli.UserError(InProcessCli.Run(args));

    /// <summary>A copy of the world's model whose config.json has been edited.</summary>
    static string ModelWithConfig(Action<JsonObject> edit)
    {
        var dir = W.CopyOf(W.Model, "model");
        var path = Path.Combine(dir, "config.json");
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(o);
        File.WriteAllText(path, o.ToJsonString());
        return dir;
    }

    static string EditJson(string path, Action<JsonObject> edit)
    {
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(o);
        File.WriteAllText(path, o.ToJsonString());
        return path;
    }

    // ---------------------------------------------------------------- item 2: wrong JSON types are errors naming the field

    [TestCase("tie_word_embeddings", "\"yes\"", "field 'tie_word_embeddings' must be a boolean, got string")]
    [TestCase("attention_bias", "1", "field 'attention_bias' must be a boolean, got number 1")]
    [TestCase("whittle_layer_heads", "[null]", "field 'whittle_layer_heads[0]' must be an integer in [1, 16777216], got null")]
    [TestCase("hidden_size", "\"16\"", "field 'hidden_size' must be an integer in [1, 16777216], got string")]
    [TestCase("rotary_pct", "[]", "field 'rotary_pct' must be a number, got array")]
    [TestCase("hidden_act", "{}", "field 'hidden_act' must be a string, got object")]
    [TestCase("max_position_embeddings", "1e300", "field 'max_position_embeddings' must be an integer in [1, 2147483647], got 1e300")]
    public void ConfigFieldOfTheWrongTypeIsNamed(string key, string json, string message)
    {
        var dir = ModelWithConfig(o => o[key] = JsonNode.Parse(json));
        var line = UserError("info", dir);
        Assert.That(line, Does.Contain(Path.Combine(dir, "config.json")).And.Contain(message));
    }

    /// <summary>3 × heads × head size × hidden overflowed int in the shape arithmetic (and long in the parameter count).</summary>
    [Test]
    public void ConfigWhoseShapesOverflowIsRefused()
    {
        var dir = ModelWithConfig(o => { o["num_attention_heads"] = 16777216; o["whittle_head_size"] = 16777216; });
        Assert.That(
            UserError("info", dir),
            Does.Contain("layer 0: 3 × 16777216 heads × head size 16777216 × hidden_size 16 is more elements than one tensor holds"));
    }

    [Test]
    public void ArchitecturesOfTheWrongTypeWithoutModelTypeIsNamed()
    {
        var dir = ModelWithConfig(o => { o.Remove("model_type"); o["architectures"] = new JsonArray(1); });
        Assert.That(UserError("info", dir), Does.Contain("config.json: field 'architectures[0]' must be a string, got number 1"));
    }

    [Test]
    public void ConfigThatIsNotAnObjectOrNotJsonIsNamed()
    {
        var dir = W.CopyOf(W.Model, "model");
        File.WriteAllText(Path.Combine(dir, "config.json"), "[1, 2]");
        Assert.That(UserError("info", dir), Does.Contain("config.json: the top level must be an object, got array"));
        File.WriteAllText(Path.Combine(dir, "config.json"), "{\"vocab_size\": ");
        Assert.That(UserError("info", dir), Does.Contain("config.json: not valid JSON"));
    }

    /// <summary>Found by the fuzz tests: System.Text.Json checks a string's encoding only when it is read (exit 2 before).</summary>
    [TestCase(new byte[] { (byte)'{', (byte)'"', (byte)'a', 0xC3, (byte)'"', (byte)':', (byte)'1', (byte)'}' },
        "config.json: not valid UTF-8 (at byte 3)")]
    [TestCase(new byte[] { (byte)'{', (byte)'"', (byte)'m', (byte)'o', (byte)'d', (byte)'e', (byte)'l', (byte)'_', (byte)'t', (byte)'y',
        (byte)'p', (byte)'e', (byte)'"', (byte)':',
        (byte)'"', (byte)'\\', (byte)'u', (byte)'d', (byte)'8', (byte)'0', (byte)'0', (byte)'"', (byte)'}' },
            "config.json: field 'model_type' is not a valid Unicode string")]
    public void ConfigThatIsNotValidUnicodeIsNamed(byte[] content, string message)
    {
        var dir = W.CopyOf(W.Model, "model");
        File.WriteAllBytes(Path.Combine(dir, "config.json"), content);
        Assert.That(UserError("info", dir), Does.Contain(message));
    }

    static string TokenizerWith(Action<JsonObject> edit)
    {
        var path = Path.Combine(W.CopyOf(Path.GetDirectoryName(W.Tokenizer)!, "tok"), "tokenizer.json");
        return EditJson(path, edit);
    }

    public static IEnumerable<TestCaseData> TokenizerCases()
    {
        yield return new TestCaseData(
            (Action<JsonObject>)(o => o["added_tokens"]!.AsArray()[0] = null),
            "field 'added_tokens[0]' must be an object, got null").SetName("AddedTokenNull");
        yield return new TestCaseData(
            (Action<JsonObject>)(o => o["added_tokens"]!.AsArray()[0]!.AsObject().Remove("content")),
            "field 'added_tokens[0].content' is missing (expected a string)").SetName("AddedTokenWithoutContent");
        yield return new TestCaseData(
            (Action<JsonObject>)(o => o["added_tokens"]!.AsArray()[0]!.AsObject().Remove("id")),
            "field 'added_tokens[0].id' is missing (expected an integer in [0, 16777215])").SetName("AddedTokenWithoutId");
        yield return new TestCaseData(
            (Action<JsonObject>)(o => o["added_tokens"]!.AsArray()[0]!["id"] = JsonNode.Parse("9223372036854775808")),
            "field 'added_tokens[0].id' must be an integer in [0, 16777215], got 9223372036854775808").SetName("AddedTokenId2Pow63");
        yield return new TestCaseData(
            (Action<JsonObject>)(o => o["decoder"]!["type"] = 3),
            "field 'decoder.type' must be a string, got number 3").SetName("DecoderTypeNumber");
        yield return new TestCaseData(
            (Action<JsonObject>)(o => o["model"]!["vocab"]!["a"] = 2_000_000_000),
            "field 'model.vocab.a' must be an integer in [0, 16777215], got 2000000000").SetName("VocabIdTwoBillion");
        yield return new TestCaseData(
            (Action<JsonObject>)(o => o["model"]!["merges"]!.AsArray()[0] = 5),
            "field 'model.merges[0]' is neither").SetName("MergeNumber");
        yield return new TestCaseData(
            (Action<JsonObject>)(
            o => o["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "(" },
            ["behavior"] = "Isolated" }),
            "field 'pre_tokenizer.pattern.Regex' is not a valid regular expression").SetName("SplitRegexInvalid");
    }

    [TestCaseSource(nameof(TokenizerCases))]
    public void TokenizerFieldOfTheWrongTypeIsNamed(Action<JsonObject> edit, string message)
    {
        var tok = TokenizerWith(edit);
        Assert.That(UserError("encode", "--tokenizer", tok, "--input", W.Text), Does.Contain($"{tok}: {message}"));
    }

    static string DatasetCopy() => W.CopyOf(W.Dataset, "data");

    [Test]
    public void MetaShardFileNullIsNamed()
    {
        var ds = DatasetCopy();
        EditJson(Path.Combine(ds, "meta.json"), o => o["train"]!["shards"]![0]!["file"] = null);
        Assert.That(
            UserError("eval", "--model", W.Model, "--data", ds),
            Does.Contain("meta.json: field 'train.shards[0].file' must be a string, got null"));
    }

    [TestCase("garbage{", "not valid JSON")]
    [TestCase("""{"version":1,"step":-1,"tokens_seen":0,"data_cursor":0,"selected_cursor":0,"seed":"1","elapsed_seconds":0}""",
        "field 'step' must be an integer in [0, 2147483647], got -1")]
    [TestCase("""{"version":1,"step":1,"tokens_seen":0,"data_cursor":0,"seed":1,"elapsed_seconds":0}""",
        "field 'seed' must be a string, got number 1")]
    [TestCase("""{"version":1,"step":1,"tokens_seen":0,"data_cursor":0,"seed":"-3","elapsed_seconds":0}""",
        "field 'seed' must be a decimal unsigned 64-bit integer")]
    public void TrainerStateMalformedIsNamed(string content, string message)
    {
        var run = W.CopyOf(W.Run, "run");
        var state = Path.Combine(run, "checkpoints", "step-0000001", "trainer_state.json");
        File.WriteAllText(state, content);
        Assert.That(UserError(["pretrain", .. W.TrainFlags(W.Dataset, run), "--resume"]), Does.Contain($"{state}: {message}"));
    }

    [TestCase("""{"embed_dim": 8, "embed_dim": 16}""", "not a valid sub-network spec")]
    [TestCase("""{"layers": [0, null]}""", "'layers': expected an integer, got null")]
    [TestCase("""{"heads": "2"}""", "'heads': expected an integer, got \"2\"")]
    [TestCase("""[]""", "a sub-network spec must be a JSON object")]
    public void SubnetSpecMalformedIsNamed(string spec, string message)
    {
        var file = Path.Combine(W.Root, $"spec-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, spec);
        Assert.That(
            UserError("eval", "--model", W.Model, "--ids", W.Ids, "--subnet", file, "--seq-len", "8"), Does.Contain($"{file}: {message}"));
    }

    // ---------------------------------------------------------------- item 3: datasets are untrusted

    /// <summary>
    /// The world's dataset rewritten as uint32 with the first training shard claiming 2^62 + n tokens: n·4 bytes is what
    /// (2^62 + n)·4 wraps to, so the old size check passed and pretrain read past the mapping (a crash, not an error).
    /// </summary>
    [Test]
    public void ShardTokenCountThatOverflowsTheByteSizeIsRefused()
    {
        var ds = DatasetCopy();
        var metaPath = Path.Combine(ds, "meta.json");
        var meta = JsonNode.Parse(File.ReadAllText(metaPath))!.AsObject();
        meta["dtype"] = "uint32";
        foreach (var split in new[] { "train", "val" })
            foreach (var sh in meta[split]!["shards"]!.AsArray())
            {
                var path = Path.Combine(ds, sh!["file"]!.GetValue<string>());
                var u16 = File.ReadAllBytes(path);
                var u32 = new byte[u16.Length * 2];
                for (int i = 0; i < u16.Length / 2; i++) { u32[4 * i] = u16[2 * i]; u32[4 * i + 1] = u16[2 * i + 1]; }
                File.WriteAllBytes(path, u32);
            }
        var first = meta["train"]!["shards"]![0]!;
        long n = first["tokens"]!.GetValue<long>(), lie = (1L << 62) + n;
        first["tokens"] = lie;
        meta["train"]!["tokens"] = meta["train"]!["tokens"]!.GetValue<long>() - n + lie;
        File.WriteAllText(metaPath, meta.ToJsonString());
        // A separate process: if this ever regresses, the read outside the mapping kills that process, not the test run.
        var r = CliRunner.Run(["pretrain", .. W.TrainFlags(ds, Path.Combine(ds, "run"))]);
        Assert.That(InProcessCli.UserError(r), Does.Contain($"bytes but meta.json says {lie} uint32 tokens"));
    }

    [TestCase("../data/train-0000.bin")]
    [TestCase("/etc/hostname")]
    [TestCase("sub/../../x.bin")]
    [TestCase("..")]
    public void ShardPathOutsideTheDatasetIsRefused(string file)
    {
        var ds = DatasetCopy();
        EditJson(Path.Combine(ds, "meta.json"), o => o["val"]!["shards"]![0]!["file"] = file);
        Assert.That(
            UserError("eval", "--model", W.Model, "--data", ds),
            Does.Contain($"meta.json: shard file \"{file}\" must be a file name inside the dataset directory"));
    }

    [Test]
    public void ShardSymlinkOutsideTheDatasetIsRefused()
    {
        var ds = DatasetCopy();
        var outside = Path.Combine(W.Root, $"outside-{Guid.NewGuid():N}.bin");
        var shard = Path.Combine(
            ds, JsonNode.Parse(File.ReadAllText(Path.Combine(ds, "meta.json")))!["val"]!["shards"]![0]!["file"]!.GetValue<string>());
        File.Move(shard, outside);
        File.CreateSymbolicLink(shard, outside);
        Assert.That(
            UserError("eval", "--model", W.Model, "--data", ds),
            Does.Contain("is a symbolic link to").And.Contain("outside the dataset directory"));
    }

    [Test]
    public void TokenIdAboveTheVocabularyIsReportedWithShardAndOffset()
    {
        var ds = DatasetCopy();
        var shard = Path.Combine(
            ds, JsonNode.Parse(File.ReadAllText(Path.Combine(ds, "meta.json")))!["val"]!["shards"]![0]!["file"]!.GetValue<string>());
        var bytes = File.ReadAllBytes(shard);
        bytes[2 * 37] = 0xFF; bytes[2 * 37 + 1] = 0xFF;   // token 37 := 65535
        File.WriteAllBytes(shard, bytes);
        Assert.That(UserError("eval", "--model", W.Model, "--data", ds, "--seq-len", "8"),
            Does.Contain($"{shard}: token 37 (0-based) is 65535, outside the dataset's vocabulary [0, 4096)"));
    }

    [Test]
    public void TokenIdAboveTheVocabularyStopsTrainingWithAnError()
    {
        var ds = DatasetCopy();
        var meta = JsonNode.Parse(File.ReadAllText(Path.Combine(ds, "meta.json")))!;
        foreach (var sh in meta["train"]!["shards"]!.AsArray())
        {
            var path = Path.Combine(ds, sh!["file"]!.GetValue<string>());
            File.WriteAllBytes(path, Enumerable.Repeat((byte)0xFF, (int)new FileInfo(path).Length).ToArray());
        }
        Assert.That(
            UserError(["pretrain", .. W.TrainFlags(ds, Path.Combine(ds, "run"))]),
            Does.Contain("is 65535, outside the dataset's vocabulary [0, 4096)"));
    }

    [Test]
    public void MetaVocabSizeBeyondTheDtypeIsRefused()
    {
        var ds = DatasetCopy();
        EditJson(Path.Combine(ds, "meta.json"), o => o["vocab_size"] = 70000);
        Assert.That(
            UserError("eval", "--model", W.Model, "--data", ds),
            Does.Contain("field 'vocab_size' must be an integer in [1, 65536], got 70000"));
    }

    // ---------------------------------------------------------------- item 4: options and values validated before work

    [TestCase("--lr", "NaN", "--lr must be a finite number > 0, got NaN")]
    [TestCase("--lr", "Infinity", "--lr must be a finite number > 0, got Infinity")]
    [TestCase("--lr", "-0.1", "--lr must be a finite number > 0, got -0.1")]
    [TestCase("--min-lr", "NaN", "--min-lr must be a finite number >= 0, got NaN")]
    [TestCase("--min-lr", "-1", "--min-lr must be a finite number >= 0, got -1")]
    [TestCase("--beta1", "1", "--beta1 must be in [0, 1), got 1")]
    [TestCase("--beta2", "-0.5", "--beta2 must be in [0, 1), got -0.5")]
    [TestCase("--beta2", "NaN", "--beta2 must be in [0, 1), got NaN")]
    [TestCase("--weight-decay", "-0.1", "--weight-decay must be a finite number >= 0, got -0.1")]
    [TestCase("--clip", "NaN", "--clip must be a finite number >= 0 (0: off), got NaN")]
    [TestCase("--eval-tokens", "-5", "--eval-tokens must be >= 1, got -5")]
    [TestCase("--seq-len", "65", "--seq-len 65 is above the model's max_position_embeddings 64")]
    public void TrainingOptionOutOfRangeIsRefusedBeforeWork(string option, string value, string message)
    {
        var run = Path.Combine(W.Root, $"run-{Guid.NewGuid():N}");
        Assert.That(UserError(["pretrain", .. W.TrainFlags(W.Dataset, run, (option, value))]), Does.Contain(message));
        Assert.That(Directory.Exists(Path.Combine(run, "checkpoints")), Is.False, "refused before any step ran");
    }

    [Test]
    public void OptionsAreCheckedBeforeTheDatasetIsOpened()
    {
        var missing = Path.Combine(W.Root, "no-such-dataset");
        Assert.That(
            UserError(["pretrain", .. W.TrainFlags(missing, Path.Combine(W.Root, "never"), ("--lr", "NaN"))]),
            Does.Contain("--lr must be a finite number > 0, got NaN"));
    }

    [TestCase(new[] { "eval", "--model", "m", "--seq-len", "abc" }, "Cannot parse argument 'abc' for option '--seq-len'",
        "whittle eval --help")]
    [TestCase(new[] { "eval", "--model", "m", "--seq-len", "8", "--seq-len", "9" }, "expects a single argument but 2 were provided",
        "whittle eval --help")]
    [TestCase(new[] { "pretrain", "--frobnicate" }, "Unrecognized command or argument '--frobnicate'", "whittle pretrain --help")]
    public void CommandLineThatDoesNotParseIsOneLine(string[] args, string message, string help)
    {
        var r = InProcessCli.Run(args);
        Assert.That(InProcessCli.UserError(r), Does.Contain(message).And.Contain(help));
        Assert.That(r.Stdout, Does.Not.Contain("Usage:"), "no help text dumped with the error");
    }

    /// <summary>A selection whose window index × (T + 1) overflows used to pass the fit check (then read out of range).</summary>
    [Test]
    public void SaltSelectionWithAnOverflowingWindowIsRefused()
    {
        var sel = Path.Combine(W.Root, $"sel-{Guid.NewGuid():N}.json");
        File.WriteAllText(sel, $$"""
            {"format": "whittle-salt-selection", "version": 1, "dataset_sha256": "00", "seq_len": 8, "top_k": 1, "keep": 0.5,
             "windows": 4611686018427387904, "scored": 1, "selected": [{"window": 4611686018427387903, "score": 1.0, "kept_tokens": 1}]}
            """);
        Assert.That(
            UserError(["salt", "--small", W.Model, .. W.TrainFlags(W.Dataset, Path.Combine(W.Root, "never"), init: false), "--kd-steps",
            "1", "--select", sel]),
            Does.Contain($"{sel}: selected windows do not fit this dataset's training split"));
    }

    [TestCase("null", "manifest.json: the top level must be an object, got null")]
    [TestCase("""{"format": "whittle-teacher-cache", "version": 1, "teacher": 3}""",
        "manifest.json: field 'teacher' must be a string, got number 3")]
    public void TeacherCacheManifestMalformedIsNamed(string content, string message)
    {
        var cache = Path.Combine(W.Root, $"cache-{Guid.NewGuid():N}");
        Directory.CreateDirectory(cache);
        File.WriteAllText(Path.Combine(cache, "manifest.json"), content);
        Assert.That(
            UserError(["distill", "--teacher-cache", cache, .. W.TrainFlags(W.Dataset, Path.Combine(W.Root, "never"), init: false)]),
            Does.Contain(message));
    }

    [TestCase("--max-tokens", "-1", "--max-tokens must be >= 1, got -1")]
    [TestCase("--seq-len", "100", "--seq-len 100 is above the model's max_position_embeddings 64")]
    public void EvalOptionOutOfRangeIsRefused(string option, string value, string message) =>
        Assert.That(UserError("eval", "--model", W.Model, "--ids", W.Ids, option, value), Does.Contain(message));

    [TestCase(0.0)]
    [TestCase(-10000.0)]
    public void RotaryBaseNotPositiveIsRefused(double value)
    {
        var dir = ModelWithConfig(o => o["rotary_emb_base"] = value);
        Assert.That(UserError("info", dir), Does.Contain($"rotary_emb_base (rope_theta) must be a positive number, got {value}"));
    }

    [Test]
    public void NonFiniteWeightsAreAWarningAndEvalRefusesThem()
    {
        var dir = Path.Combine(W.Root, $"nan-model-{Guid.NewGuid():N}");
        const string tensor = "gpt_neox.layers.1.mlp.dense_h_to_4h.weight";
        using (var m = GptNeoX.CreateRandom(FuzzWorld.Config, CpuBackend.Instance, 7))
        {
            var w = m.Parameters[tensor].AsSpan<float>();
            w[3] = float.NaN; w[5] = float.PositiveInfinity;
            GptNeoXCheckpoint.Save(m, dir);
        }
        var r = InProcessCli.Run("eval", "--model", dir, "--ids", W.Ids);
        Assert.That(InProcessCli.UserError(r), Does.Contain($"{dir}: 1 tensor(s) hold NaN or Inf values (first: '{tensor}')"));
        Assert.That(r.Stderr, Does.Contain($"warning: {dir}: tensor '{tensor}' holds 2 NaN or Inf values of 512"));
        Assert.That(r.Stdout, Does.Not.Contain("perplexity"));
    }
}
