// Policy: tokenize → open → read back, checked against the tokenizer applied directly to each document; the split
// is by whole documents and fixed by the seed; loaders are deterministic, resumable and cover every token once in
// sequential mode; bad inputs fail with a clear error and leave nothing behind.
using System.IO.Compression;
using System.Text;
using Whittle.Native.Data;
using Whittle.Native.Tests.Tokenization;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Data;

public class DatasetTests
{
    string _dir = "";
    static Tokenizer? _tok;
    static Tokenizer Tok => _tok ??= Tokenizer.FromFile(Fixtures.AustenTokenizer);

    [SetUp] public void SetUp() { _dir = Path.Combine(Path.GetTempPath(), $"whittle-ds-{Guid.NewGuid():N}");
    Directory.CreateDirectory(_dir); }
    [TearDown] public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    string[] Docs(int n) =>
        Enumerable.Range(0, n).Select(
        i => $"CHAPTER {i}\n\nIt is a truth universally acknowledged, number {i}, that a man 'd want {i * 7} " +
        $"things.\n{(i % 3 == 0 ? "Ünïcödé é\n" : "")}").ToArray();

    string WriteText(string name, string text, bool gz = false)
    {
        var path = Path.Combine(_dir, name);
        if (!gz) File.WriteAllText(path, text, new UTF8Encoding(false));
        else { using var z = new GZipStream(File.Create(path), CompressionLevel.Fastest); z.Write(Encoding.UTF8.GetBytes(text)); }
        return path;
    }

    static int[] ReadAll(TokenStream s) { var a = new int[s.Length]; s.Read(0, a); return a; }

    [Test]
    public void SplitsByDocumentAndMatchesDirectEncoding()
    {
        var docs = Docs(60);
        var input = WriteText("in.txt.gz", string.Concat(docs), gz: true);
        var outDir = Path.Combine(_dir, "ds");
        var meta = DatasetWriter.Write(Tok, new TokenizeOptions([input], outDir, 0.25, 7, DocStart: "^CHAPTER "));
        var expectTrain = new List<int>();
        var expectVal = new List<int>();
        for (int i = 0; i < docs.Length; i++)
        {
            var target = DatasetWriter.IsVal(7, i, 0.25) ? expectVal : expectTrain;
            target.AddRange(Tok.Encode(docs[i]));
            target.Add(Tok.EosId!.Value);
        }
        Assert.That(expectVal, Is.Not.Empty, "seed 7 puts some of 60 documents in val");
        using var ds = TokenDataset.Open(outDir);
        Assert.That(ReadAll(ds.Train), Is.EqualTo(expectTrain.ToArray()));
        Assert.That(ReadAll(ds.Val), Is.EqualTo(expectVal.ToArray()));
        Assert.That(ds.Meta.DType, Is.EqualTo("uint16"));
        Assert.That(ds.Meta.TokenizerSha256, Is.EqualTo(Tok.Sha256));
        Assert.That(ds.Meta.Train.Documents + ds.Meta.Val.Documents, Is.EqualTo(60));
        Assert.That(meta.Train.Tokens, Is.EqualTo(expectTrain.Count));
        Assert.That(Directory.GetDirectories(_dir), Is.EqualTo(new[] { outDir }), "no temporary directory left");
    }

    [Test]
    public void ShardsAndJsonlAndSeed()
    {
        var docs = Docs(30);
        var jsonl = WriteText("in.jsonl",
            string.Concat(docs.Select(d => System.Text.Json.JsonSerializer.Serialize(d) is var s ? $"{{\"text\":{s}}}\n" : "")));
        var a = DatasetWriter.Write(Tok, new TokenizeOptions([jsonl], Path.Combine(_dir, "a"), 0.3, 1, ShardTokens: 100));
        var b = DatasetWriter.Write(Tok, new TokenizeOptions([jsonl], Path.Combine(_dir, "b"), 0.3, 2, ShardTokens: 100));
        Assert.That(a.Train.Shards.Count, Is.GreaterThan(2));
        var valA = Enumerable.Range(0, 30).Where(i => DatasetWriter.IsVal(1, i, 0.3)).ToArray();
        var valB = Enumerable.Range(0, 30).Where(i => DatasetWriter.IsVal(2, i, 0.3)).ToArray();
        Assert.That(valA, Is.Not.EqualTo(valB), "different seeds, different split");
        Assert.That(a.Val.Documents, Is.EqualTo(valA.Length));
        Assert.That(b.Val.Documents, Is.EqualTo(valB.Length));
        using var ds = TokenDataset.Open(Path.Combine(_dir, "a"));
        var all = ReadAll(ds.Train);
        var part = new int[150];
        ds.Train.Read(80, part);   // spans a shard boundary
        Assert.That(part, Is.EqualTo(all.Skip(80).Take(150).ToArray()));
    }

    [Test]
    public void BatchLoaderRandomIsDeterministicAndResumable()
    {
        var input = WriteText("in.txt", string.Concat(Docs(40)));
        DatasetWriter.Write(Tok, new TokenizeOptions([input], Path.Combine(_dir, "ds"), 0, 0));
        using var ds = TokenDataset.Open(Path.Combine(_dir, "ds"));
        var all = ReadAll(ds.Train);
        var l1 = BatchLoader.Random(ds.Train, 4, 16, 123);
        var batches = Enumerable.Range(0, 5).Select(_ => { l1.TryNext(out var b); return b; }).ToList();
        var l2 = BatchLoader.Random(ds.Train, 4, 16, 123);
        l2.Cursor = 3;
        l2.TryNext(out var b3);
        Assert.That(b3, Is.EqualTo(batches[3]));
        Assert.That(batches[0], Is.Not.EqualTo(batches[1]));
        var l3 = BatchLoader.Random(ds.Train, 4, 16, 124);
        l3.TryNext(out var other);
        Assert.That(other, Is.Not.EqualTo(batches[0]));
        // Every row is a contiguous window of the stream.
        foreach (var b in batches)
            for (int r = 0; r < 4; r++)
            {
                var row = b.AsSpan(r * 17, 17).ToArray();
                bool found = Enumerable.Range(0, all.Length - 16).Any(s => all.AsSpan(s, 17).SequenceEqual(row));
                Assert.That(found, Is.True);
            }
    }

    [Test]
    public void SequentialCoversEveryTargetOnce()
    {
        var input = WriteText("in.txt", string.Concat(Docs(20)));
        DatasetWriter.Write(Tok, new TokenizeOptions([input], Path.Combine(_dir, "ds"), 0, 0));
        using var ds = TokenDataset.Open(Path.Combine(_dir, "ds"));
        var all = ReadAll(ds.Train);
        const int T = 10;
        var loader = BatchLoader.Sequential(ds.Train, 3, T);
        var targets = new List<int>();
        long rows = 0;
        while (loader.TryNext(out var b))
            for (int r = 0; r < b.Length / (T + 1); r++, rows++)
            {
                Assert.That(b.AsSpan(r * (T + 1), T + 1).ToArray(), Is.EqualTo(all.AsSpan((int)rows * T, T + 1).ToArray()));
                targets.AddRange(b.AsSpan(r * (T + 1) + 1, T).ToArray());
            }
        Assert.That(rows, Is.EqualTo((all.Length - 1) / T));
        Assert.That(
            targets, Is.EqualTo(all.Skip(1).Take((int)rows * T).ToArray()), "each token after the first is a target once, in order");
    }

    [Test]
    public void InvalidUtf8ReportsOffsetAndLeavesNothing()
    {
        var path = Path.Combine(_dir, "bad.txt");
        File.WriteAllBytes(path, [.. Encoding.UTF8.GetBytes("hello\nwor"), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("ld\n")]);
        var outDir = Path.Combine(_dir, "ds");
        Assert.That(() => DatasetWriter.Write(Tok, new TokenizeOptions([path], outDir)),
            Throws.InstanceOf<InvalidFileException>().With.Message.Contains("byte offset 9"));
        Assert.That(Directory.GetDirectories(_dir), Is.Empty, "no partial output");
        var meta = DatasetWriter.Write(Tok, new TokenizeOptions([path], outDir, ReplaceInvalid: true));
        using var ds = TokenDataset.Open(outDir);
        Assert.That(Tok.Decode(ReadAll(ds.Train)), Is.EqualTo("hello\nwor\uFFFD(ld\n<|endoftext|>"));
    }

    [Test]
    public void EmptyInputIsAnError()
    {
        var path = WriteText("empty.txt", "");
        Assert.That(() => DatasetWriter.Write(Tok, new TokenizeOptions([path], Path.Combine(_dir, "ds"))),
            Throws.InstanceOf<WhittleException>().With.Message.Contains("no text"));
        Assert.That(Directory.GetDirectories(_dir), Is.Empty);
    }

    [Test]
    public void TruncatedShardAndTokenizerMismatchAreClearErrors()
    {
        var input = WriteText("in.txt", string.Concat(Docs(10)));
        var outDir = Path.Combine(_dir, "ds");
        DatasetWriter.Write(Tok, new TokenizeOptions([input], outDir));
        using (var ds = TokenDataset.Open(outDir))
        {
            ds.RequireTokenizer(Tok.Sha256, "austen");
            var gpt2 = Tokenizer.FromFile(Fixtures.Gpt2Json);
            Assert.That(
                () => ds.RequireTokenizer(gpt2.Sha256, gpt2.Path), Throws.InstanceOf<WhittleException>().With.Message.Contains("sha256"));
        }
        var shard = Path.Combine(outDir, "train-0000.bin");
        using (var f = File.OpenWrite(shard)) f.SetLength(f.Length - 1);
        Assert.That(() => TokenDataset.Open(outDir), Throws.InstanceOf<InvalidFileException>().With.Message.Contains("truncated"));
    }

    [Test]
    public void Gpt2FitsUint16AndEndsDocumentsWithEos()
    {
        var gpt2 = Tokenizer.FromFile(Fixtures.Gpt2Json);
        Assert.That(gpt2.VocabSize, Is.LessThanOrEqualTo(65536));
        var input = WriteText("in.txt", "hello world");
        DatasetWriter.Write(gpt2, new TokenizeOptions([input], Path.Combine(_dir, "ds")));
        using var ds = TokenDataset.Open(Path.Combine(_dir, "ds"));
        Assert.That(ds.Meta.DType, Is.EqualTo("uint16"));
        Assert.That(ReadAll(ds.Train), Is.EqualTo(new[] { 31373, 995, 50256 }));
    }
}
