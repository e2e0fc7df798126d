using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tests.Cli;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.IO;

/// <summary>Shared scratch directory and small helpers for the reliability tests (issue 14).</summary>
public abstract class ScratchTests
{
    protected string Root = "";
    [SetUp] public void MakeRoot() => Root = Directory.CreateTempSubdirectory("whittle-rel-").FullName;
    [TearDown] public void RemoveRoot() { try { Directory.Delete(Root, true); } catch (IOException) { } }

    /// <summary>Exit 1 and one error line, the last thing on stderr (progress lines may come before it when stderr is
    /// not a terminal), mentioning each of <paramref name="mentions"/>.</summary>
    protected static void AssertOneLineError((int Exit, string Stdout, string Stderr) r, params string[] mentions)
    {
        string shown = r.Stderr.Length > 2000 ? r.Stderr[..2000] : r.Stderr;
        Assert.That(r.Exit, Is.EqualTo(1), r.Stdout + shown);
        var errors = r.Stderr.TrimEnd().Split('\n').Where(l => !l.StartsWith("tokenize: ") && !l.StartsWith("removed ")).ToArray();
        Assert.That(errors, Has.Length.EqualTo(1), shown);
        Assert.That(errors[0], Does.StartWith("error: "));
        Assert.That(r.Stderr.TrimEnd(), Does.EndWith(errors[0]));
        foreach (var m in mentions) Assert.That(errors[0], Does.Contain(m));
    }

    protected string TinyModel(string name)
    {
        var dir = Path.Combine(Root, name);
        var c = new GptNeoXConfig { VocabSize = 64, HiddenSize = 16, NumLayers = 1, NumHeads = 2, IntermediateSize = 32,
            MaxPositionEmbeddings = 32 };
        using var m = GptNeoX.CreateRandom(c, CpuBackend.Instance, 1);
        GptNeoXCheckpoint.Save(m, dir);
        return dir;
    }

    protected static void MkFifo(string path)
    {
        using var p = Process.Start("mkfifo", [path]);
        p.WaitForExit();
        if (p.ExitCode != 0) Assert.Ignore("mkfifo is not available here");
    }
}

/// <summary>Item 9: whittle's safetensors carry a SHA-256 of their data, verified on load; other files are not checked.</summary>
public class SafeTensorsIntegrityTests : ScratchTests
{
    [Test]
    public void TheRecordedDigestIsTheSha256OfTheDataSection()
    {
        var file = Path.Combine(TinyModel("m"), "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        long dataStart = 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        // Independent of the reader: parse the header ourselves and hash the bytes after it.
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)(dataStart - 8)))!;
        var recorded = header["__metadata__"]![SafeTensorsFile.DataSha256Key]!.GetValue<string>();
        Assert.That(recorded, Is.EqualTo(Convert.ToHexStringLower(SHA256.HashData(bytes.AsSpan((int)dataStart)))));
        using var st = new SafeTensorsFile(file);   // verifies, and must accept
        Assert.That(st.Metadata[SafeTensorsFile.DataSha256Key], Is.EqualTo(recorded));
    }

    [Test]
    public void AFlippedWeightByteIsDetectedNamingTheFile()
    {
        var dir = TinyModel("m");
        var file = Path.Combine(dir, "model.safetensors");
        long dataStart;
        using (var st = new SafeTensorsFile(file)) dataStart = st.DataStart;
        var bytes = File.ReadAllBytes(file);
        bytes[dataStart + (bytes.Length - dataStart) / 2] ^= 0x01;   // one bit of one weight, mid-file
        File.WriteAllBytes(file, bytes);
        var ex = Assert.Throws<InvalidFileException>(() => new SafeTensorsFile(file).Dispose());
        Assert.That(ex!.Message, Does.Contain(file).And.Contain("SHA-256"));
        AssertOneLineError(CliRunner.Run("info", dir), file, "SHA-256");
        AssertOneLineError(CliRunner.Run("eval", "--model", dir, "--ids", WriteIds()), file, "corrupt");
    }

    string WriteIds()
    {
        var p = Path.Combine(Root, "ids.json");
        File.WriteAllText(p, "[" + string.Join(",", Enumerable.Range(0, 40).Select(i => i % 64)) + "]");
        return p;
    }

    /// <summary>A Hugging Face file (here the PyTorch-written fixture) has no digest: a flipped byte loads, changed.</summary>
    [Test]
    public void FilesWithoutADigestAreNotChecked()
    {
        var src = Path.Combine(CliRunner.Fixture("tiny-neox"), "model.safetensors");
        var copy = Path.Combine(Root, "hf.safetensors");
        File.Copy(src, copy);
        string name; float before; long offset;
        using (var st = new SafeTensorsFile(copy))
        {
            Assert.That(st.Metadata.ContainsKey(SafeTensorsFile.DataSha256Key), Is.False);
            var e = st.Tensors.Values.First(t => t.DType == Whittle.Native.Tensors.DType.F32);
            (name, before, offset) = (e.Name, st.ReadFloats(e.Name)[0], e.FileOffset);
        }
        var bytes = File.ReadAllBytes(copy);
        bytes[offset + 3] ^= 0x80;   // the sign bit of the first element's float: a visible change
        File.WriteAllBytes(copy, bytes);
        using var changed = new SafeTensorsFile(copy);
        Assert.That(changed.ReadFloats(name)[0], Is.EqualTo(-before));
    }

    [Test]
    public void AMalformedDigestIsAnError()
    {
        var file = Path.Combine(TinyModel("m"), "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        var text = Encoding.ASCII.GetString(bytes);
        int at = text.IndexOf($"\"{SafeTensorsFile.DataSha256Key}\":\"", StringComparison.Ordinal) +
            SafeTensorsFile.DataSha256Key.Length + 4;
        bytes[at] = (byte)'X';
        File.WriteAllBytes(file, bytes);
        var ex = Assert.Throws<InvalidFileException>(() => new SafeTensorsFile(file).Dispose());
        Assert.That(ex!.Message, Does.Contain(SafeTensorsFile.DataSha256Key).And.Contain("64 lowercase hex digits"));
    }
}

/// <summary>Item 6: a FIFO or a device given as a model or data file is refused by its type, without opening it.</summary>
public class SpecialFileTests : ScratchTests
{
    [Test]
    public void AFifoAsModelWeightsIsRefusedWithoutBlocking()
    {
        var dir = TinyModel("m");
        var weights = Path.Combine(dir, "model.safetensors");
        File.Delete(weights);
        MkFifo(weights);
        AssertOneLineError(CliRunner.RunWithin(TimeSpan.FromMinutes(2), null, null, "info", dir), weights, "FIFO");
    }

    [Test]
    public void ADeviceAsConfigIsRefused()
    {
        var dir = TinyModel("m");
        var config = Path.Combine(dir, "config.json");
        File.Delete(config);
        File.CreateSymbolicLink(config, "/dev/zero");
        AssertOneLineError(CliRunner.RunWithin(TimeSpan.FromMinutes(2), null, null, "info", dir), config, "character device");
    }

    [Test]
    public void AFifoAsDatasetMetaOrTokenizerIsRefused()
    {
        var data = Path.Combine(Root, "data");
        Directory.CreateDirectory(data);
        MkFifo(Path.Combine(data, "meta.json"));
        var ex = Assert.Throws<InvalidFileException>(() => TokenDataset.Open(data).Dispose());
        Assert.That(ex!.Message, Does.Contain("meta.json").And.Contain("FIFO"));
        var tok = Path.Combine(Root, "tokenizer.json");
        MkFifo(tok);
        Assert.That(() => Tokenizer.FromFile(tok), Throws.InstanceOf<InvalidFileException>().With.Message.Contain("FIFO"));
    }

    [Test]
    public void KindReadsTheFileType()
    {
        Assert.That(InputFile.Kind(CliRunner.Fixture("tiny-neox") + "/config.json"), Is.EqualTo("regular file").Or.Null);
        if (InputFile.Kind("/dev/null") is null) Assert.Ignore("stat(2) is not available on this platform");
        Assert.That(InputFile.Kind("/dev/null"), Is.EqualTo("character device"));
        Assert.That(InputFile.Kind(Root), Is.EqualTo("directory"));
        Assert.That(InputFile.Kind(Path.Combine(Root, "absent")), Is.Null);
    }
}

/// <summary>Item 6: bounded time (regex timeouts) and memory (tokenize of text without line breaks), clipped echoes.</summary>
public class BoundedInputTests : ScratchTests
{
    /// <summary>/dev/zero has no end and no line break: tokenize stops with one line after a bounded amount of text
    /// (DatasetWriter.MaxUncutChars) instead of building a StringBuilder until memory runs out.</summary>
    [Test]
    public void TokenizeOfAnEndlessNewlineFreeInputStopsWithAnError()
    {
        var outDir = Path.Combine(Root, "out");
        var r = CliRunner.RunWithin(
            TimeSpan.FromMinutes(3), null, null, "tokenize", "--tokenizer", TestData.TokenizerPath, "--input", "/dev/zero",
            "--out", outDir);
        AssertOneLineError(r, "/dev/zero", "line 1", "no line break");
        Assert.That(Directory.Exists(outDir), Is.False, "nothing written");
        Assert.That(Directory.EnumerateFileSystemEntries(Root), Is.Empty, "no temporary directory left behind");
    }

    /// <summary>A 2.5-million-character line (longer than a read buffer, no line break to cut at) is cut before a space
    /// between words, and the dataset holds exactly the tokens of encoding the whole line at once: the cut changed nothing.</summary>
    [Test]
    public void ALongLineIsCutBetweenWordsWithoutChangingTheTokens()
    {
        var rng = new Random(4);
        string[] words = ["the", "of", "Elizabeth", "Darcy's", "said", "—", "1811,", "well", "\"no\"", "Mr."];
        var sb = new StringBuilder();
        while (sb.Length < 2_500_000) sb.Append(words[rng.Next(words.Length)]).Append(rng.Next(20) == 0 ? "  " : " ");
        var text = sb.ToString().TrimEnd() + "\n";
        var input = Path.Combine(Root, "long.txt");
        File.WriteAllText(input, text);
        var tok = Tokenizer.FromFile(TestData.TokenizerPath);
        var outDir = Path.Combine(Root, "out");
        DatasetWriter.Write(tok, new TokenizeOptions([input], outDir));
        using var data = TokenDataset.Open(outDir);
        var got = new int[data.Train.Length];
        data.Train.Read(0, got);
        Assert.That(got, Is.EqualTo((int[])[.. tok.Encode(text), tok.EosId!.Value]));
    }

    /// <summary>A --doc-start pattern the linear-time engine cannot run (a backreference) and that backtracks exponentially
    /// on a line: an error naming the option and the line after DatasetWriter.DocStartTimeout, not a hang.</summary>
    [Test]
    public void ACatastrophicDocStartPatternTimesOut()
    {
        var input = Path.Combine(Root, "in.txt");
        File.WriteAllText(input, "first line\n" + new string('a', 40) + "!\n");
        var r = CliRunner.RunWithin(
            TimeSpan.FromMinutes(2), null, null, "tokenize", "--tokenizer", TestData.TokenizerPath, "--input", input,
            "--out", Path.Combine(Root, "out"), "--doc-start", @"(\w+\s?)*$\1");
        AssertOneLineError(r, "--doc-start", "line 2");
    }

    [Test]
    public void ALinearTimeDocStartPatternStillSplitsDocuments()
    {
        Assert.That(
            DatasetWriter.DocStartRegex(@"^(\w+\s?)*$").Options.HasFlag(
            System.Text.RegularExpressions.RegexOptions.NonBacktracking), Is.True);
        Assert.That(
            DatasetWriter.DocStartRegex(@"^(\w+\s?)*$").IsMatch(new string('a', 5000) + "!"), Is.False,
            "exponential for a backtracking engine, linear here");
        Assert.That(
            () => DatasetWriter.DocStartRegex("(unclosed"), Throws.InstanceOf<WhittleException>().With.Message.Contain("--doc-start"));
    }

    /// <summary>A tokenizer.json whose Split pattern backtracks exponentially: encode fails naming the file.</summary>
    [Test]
    public void ACatastrophicSplitPatternTimesOutNamingTheTokenizer()
    {
        var json = JsonNode.Parse(File.ReadAllText(TestData.TokenizerPath))!;
        json["pre_tokenizer"] = JsonNode.Parse("""
            {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": "(\\w+\\s?)*$"}, "behavior": "Isolated", "invert": false},
              {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
            """);
        var tok = Path.Combine(Root, "tokenizer.json");
        File.WriteAllText(tok, json.ToJsonString());
        Assert.That(Tokenizer.FromFile(tok).Encode("abab aab"), Is.Not.Empty, "the pattern works on ordinary text");
        var r = CliRunner.RunWithin(TimeSpan.FromMinutes(2), null, new string('a', 40) + "!", "encode", "--tokenizer", tok);
        AssertOneLineError(r, tok, "Split pattern");
    }

    /// <summary>A 10 MB tensor name in a safetensors header: the error names the tensor, clipped.</summary>
    [Test]
    public void AHugeTensorNameIsNotEchoedWhole()
    {
        var name = new string('w', 10_000_000);
        var header = Encoding.UTF8.GetBytes($"{{\"{name}\":{{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}}}");
        var file = Path.Combine(Root, "model.safetensors");
        using (var fs = File.Create(file))
        {
            var len = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            fs.Write(len); fs.Write(header); fs.Write(new byte[8]);
        }
        var ex = Assert.Throws<InvalidFileException>(() => new SafeTensorsFile(file).Dispose());
        Assert.That(ex!.Message.Length, Is.LessThan(1000), ex.Message[..Math.Min(300, ex.Message.Length)]);
        Assert.That(ex.Message, Does.Contain("wwww").And.Contain("10,000,000 characters"));
    }
}

public class ErrorTextTests
{
    [Test]
    public void ClipKeepsShortTextAndMarksLongText()
    {
        Assert.That(ErrorText.Clip("embed_out.weight"), Is.EqualTo("embed_out.weight"));
        var clipped = ErrorText.Clip(new string('x', 5000));
        Assert.That(clipped, Does.StartWith(new string('x', ErrorText.MaxEcho) + "…").And.EndWith("(5,000 characters)"));
        Assert.That(ErrorText.Clip("a\nb\u0001"), Is.EqualTo("a\\nb\\u0001"), "an echo cannot break the error onto two lines");
        Assert.That(ErrorText.Clip(null), Is.EqualTo("null"));
    }

    [Test]
    public void OneLineBoundsTheWholeMessageKeepingBothEnds()
    {
        var message = "file.json: field 'x' is '" + new string('v', 100_000) + "'; expected a number";
        var line = ErrorText.OneLine(message);
        Assert.That(line.Length, Is.LessThan(ErrorText.MaxLine + 100));
        Assert.That(line, Does.StartWith("file.json: field 'x'").And.EndWith("expected a number"));
        Assert.That(ErrorText.OneLine("two\nlines"), Is.EqualTo("two\\nlines"));
    }
}

/// <summary>
/// Item 7: file-system failures are the user's (exit 1, one line with the path) and leave nothing half-written.
/// Tests run as root in CI, where permission bits do not stop writes: the read-only and full targets are small tmpfs
/// mounts (mount -o ro / size=…), and the tests that need them are ignored where mounting is not allowed.
/// </summary>
[NonParallelizable]
public class IoFailureTests : ScratchTests
{
    readonly List<string> _mounts = [];

    [TearDown]
    public void Unmount() { foreach (var m in _mounts) using (var p = Process.Start("umount", [m])) p.WaitForExit(); _mounts.Clear(); }

    string Mount(string name, string options)
    {
        var dir = Path.Combine(Root, name);
        Directory.CreateDirectory(dir);
        using var p = Process.Start(
            new ProcessStartInfo("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]) { RedirectStandardError = true });
        p!.WaitForExit();
        if (p.ExitCode != 0) Assert.Ignore($"cannot mount a tmpfs here ({p.StandardError.ReadToEnd().Trim()}): not testable without it");
        _mounts.Add(dir);
        return dir;
    }

    static string[] Tokenize(string outDir) =>
        ["tokenize", "--tokenizer", TestData.TokenizerPath, "--input", Path.Combine(TestData.RepoData, "austen.txt.gz"), "--out", outDir];

    [Test]
    public void AnOutThatIsAFileIsRefused()
    {
        var file = Path.Combine(Root, "taken");
        File.WriteAllText(file, "mine");
        var small = Path.Combine(Root, "small.txt");
        File.WriteAllText(small, "Some text.\n");
        AssertOneLineError(CliRunner.Run("tokenize", "--tokenizer", TestData.TokenizerPath, "--input", small, "--out", file), file);
        AssertOneLineError(
            CliRunner.Run("extract", "--model", CliRunner.Fixture("tiny-neox"), "--subnet", WriteSpec(), "--out", file), file);
        Assert.That(File.ReadAllText(file), Is.EqualTo("mine"));
        Assert.That(
            Directory.EnumerateFileSystemEntries(Root).Select(Path.GetFileName),
            Is.EquivalentTo(new[] { "taken", "small.txt", "spec.json" }), "no temporary left behind");
    }

    string WriteSpec()
    {
        var p = Path.Combine(Root, "spec.json");
        File.WriteAllText(p, """{"embed_dim": 16, "layers": 1, "heads": 1, "intermediate_size": 16}""");
        return p;
    }

    [Test]
    public void ANameTooLongIsRefusedWithThePath()
    {
        var outDir = Path.Combine(Root, new string('n', 300));
        var small = Path.Combine(Root, "small.txt");
        File.WriteAllText(small, "Some text.\n");
        var r = CliRunner.Run("tokenize", "--tokenizer", TestData.TokenizerPath, "--input", small, "--out", outDir);
        AssertOneLineError(r, "nnnnnnnn");
        Assert.That(Directory.EnumerateFileSystemEntries(Root).Select(Path.GetFileName), Is.EquivalentTo(new[] { "small.txt" }));
    }

    [Test]
    public void AReadOnlyTargetIsRefusedWithThePath()
    {
        var ro = Mount("ro", "ro,size=1m");
        var outDir = Path.Combine(ro, "data");
        var small = Path.Combine(Root, "small.txt");
        File.WriteAllText(small, "Some text.\n");
        AssertOneLineError(CliRunner.Run("tokenize", "--tokenizer", TestData.TokenizerPath, "--input", small, "--out", outDir), ro);
        AssertOneLineError(
            CliRunner.Run("extract", "--model", CliRunner.Fixture("tiny-neox"), "--subnet", WriteSpec(), "--out",
            Path.Combine(ro, "m")), ro);
        Assert.That(Directory.EnumerateFileSystemEntries(ro), Is.Empty);
    }

    /// <summary>A disk that fills up mid-write: tokenize of the whole corpus (~2.5 MB of shards) into 256 KB fails with
    /// the path, exit 1, and leaves the disk as it found it (the temporary directory is removed).</summary>
    [Test]
    public void AFullDiskIsRefusedWithThePathAndLeavesNothing()
    {
        var full = Mount("full", "size=256k");
        var r = CliRunner.Run(Tokenize(Path.Combine(full, "data")));
        AssertOneLineError(r, full);
        Assert.That(r.Stderr, Does.Contain("No space left on device"));
        Assert.That(Directory.EnumerateFileSystemEntries(full), Is.Empty);
    }

    /// <summary>Training whose first checkpoint (~6 MB of weights and AdamW moments) does not fit: exit 1 naming the
    /// path, and no half-written checkpoint or temporary left in the run directory.</summary>
    [Test]
    public void ACheckpointThatDoesNotFitLeavesNoHalfWrittenCheckpoint()
    {
        var full = Mount("full", "size=1m");
        var run = Path.Combine(full, "run");
        var r = CliRunner.Run("pretrain", "--data", TestData.AustenSlice, "--out", run, "--steps", "2", "--save-every", "1",
            "--seq-len", "16",
            "--batch-size", "2", "--eval-tokens", "64", "--layers", "1", "--hidden", "64", "--heads", "2");
        AssertOneLineError(r, full, "No space left on device");
        var left = Directory.EnumerateFileSystemEntries(run, "*",
            SearchOption.AllDirectories).Select(p => Path.GetRelativePath(run, p)).ToList();
        Assert.That(
            left.Where(p =>
            p.Contains(".tmp-") || p.StartsWith("checkpoints" + Path.DirectorySeparatorChar + "step-") || p.StartsWith("final")), Is.Empty,
            string.Join(", ", left));
    }
}
