// Tests for safetensors I/O and Hugging Face checkpoint directories. References, all independent of the code under
// test: a file PyTorch's values and bytes produced (tools/fixtures/make_safetensors_fixture.py), hand-written
// expected header bytes, .NET's own Half conversion, and invariants (exact round trip, nearest-bf16, tiling).
using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Model;

public class SafeTensorsTests
{
    string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "whittle-safetensors-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    static string FixturePath(string file) => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "safetensors", file);

    static uint[] Bits(float[] x) => x.Select(f => (uint)BitConverter.SingleToInt32Bits(f)).ToArray();

    // ------------------------------------------------------------------ PyTorch reference file

    [Test]
    public void ReadsThePyTorchReferenceFileExactly()
    {
        var expected = JsonNode.Parse(File.ReadAllText(FixturePath("torch_reference.expected.json")))!;
        using var f = new SafeTensorsFile(FixturePath("torch_reference.safetensors"));

        Assert.That(f.Metadata["format"], Is.EqualTo("pt"));
        var tensors = expected["tensors"]!.AsObject();
        Assert.That(f.Tensors.Keys, Is.EquivalentTo(tensors.Select(kv => kv.Key)));
        int floatTensors = 0;
        foreach (var (name, node) in tensors)
        {
            var e = f.Find(name);
            Assert.That(e.DTypeName, Is.EqualTo((string)node!["dtype"]!), name);
            Assert.That(e.Shape, Is.EqualTo(node["shape"]!.AsArray().Select(x => (int)x!).ToArray()), name);
            if (node["f32_bits"] is JsonArray bits)
            {
                floatTensors++;
                var want = bits.Select(b => (uint)b!).ToArray();
                Assert.That(Bits(f.ReadFloats(name)), Is.EqualTo(want), $"{name}: f32 values differ from torch's");
                using var t = f.ReadTensor(name);
                Assert.That(t.DType, Is.EqualTo(DType.F32));
                Assert.That(t.Name, Is.EqualTo(name));
                Assert.That(t.ShapeArray, Is.EqualTo(e.Shape));
                Assert.That(Bits(t.ToFloatArray()), Is.EqualTo(want), name);
            }
            else if (node["ints"] is JsonArray ints)
            {
                var want = ints.Select(x => (int)x!).ToArray();
                Assert.That(f.ReadInts(name), Is.EqualTo(want));
                using var t = f.ReadTensor(name);
                Assert.That(t.DType, Is.EqualTo(DType.I32));
                Assert.That(t.ToIntArray(), Is.EqualTo(want));
            }
        }
        Assert.That(floatTensors, Is.EqualTo(8), "the fixture's float tensors were all checked");
        Assert.That(f.Find("scalar").Shape, Is.Empty, "0-d tensor");
        Assert.That(f.ReadFloats("scalar"), Is.EqualTo(new[] { 2.5f }));
        Assert.That(f.ReadFloats("empty"), Is.Empty);
    }

    [Test]
    public void UnsupportedDTypeIsListedButReadingItAsFloatNamesTheDType()
    {
        using var f = new SafeTensorsFile(FixturePath("torch_reference.safetensors"));
        var e = f.Find("i64.unsupported");
        Assert.That(e.DType, Is.Null);
        Assert.That(e.DTypeName, Is.EqualTo("I64"));
        var ex = Assert.Throws<InvalidFileException>(() => f.ReadFloats("i64.unsupported"))!;
        Assert.That(ex.Message, Does.Contain("I64").And.Contain("i64.unsupported").And.Contain("torch_reference.safetensors"));
        Assert.Throws<InvalidFileException>(() => f.ReadTensor("i64.unsupported"));
        var ex2 = Assert.Throws<InvalidFileException>(() => f.ReadInts("f32.arange"))!;
        Assert.That(ex2.Message, Does.Contain("F32").And.Contain("I32"));
    }

    [TestCase(DType.BF16, "bf16.awkward", 2, 6)]
    [TestCase(DType.F16, "half.awkward", 3, 4)]
    public void WriterRoundsToHalfPrecisionExactlyAsTorchDoes(DType storeAs, string torchTensor, int rows, int cols)
    {
        var expected = JsonNode.Parse(File.ReadAllText(FixturePath("torch_reference.expected.json")))!;
        var source = expected["awkward_source_f32_bits"]!.AsArray().Select(b => BitConverter.Int32BitsToSingle((int)(uint)b!)).ToArray();
        var torchBits = expected["tensors"]![torchTensor]!["f32_bits"]!.AsArray().Select(b => (uint)b!).ToArray();
        string path = Path.Combine(_dir, "awkward.safetensors");
        using (var t = Tensor.FromArray(source, rows, cols))
            SafeTensorsWriter.Write(path, [("w", t)], storeAs: storeAs);
        using var f = new SafeTensorsFile(path);
        Assert.That(f.Find("w").DTypeName, Is.EqualTo(storeAs.SafetensorsName()));
        Assert.That(Bits(f.ReadFloats("w")), Is.EqualTo(torchBits));
    }

    // ------------------------------------------------------------------ round trips

    static readonly int[][] Shapes = [[], [0], [0, 3], [1], [7], [3, 5], [2, 3, 4], [1, 1, 9]];

    static float[] RandomFloats(Random rng, long n) =>
        Enumerable.Range(0, (int)n).Select(_ => (float)(rng.NextDouble() * 200 - 100) * MathF.Pow(2, rng.Next(-30, 30))).ToArray();

    [Test]
    public void RandomTensorsRoundTripBitExactAsF32AndI32()
    {
        var rng = new Random(7);
        var tensors = new List<(string, Tensor)>();
        for (int i = 0; i < Shapes.Length; i++)
        {
            var shape = Shapes[i];
            long n = Tensor.Numel(shape);
            tensors.Add(($"f.{i}", Tensor.FromArray(RandomFloats(rng, n), shape)));
            tensors.Add(
                ($"i.{i}", Tensor.FromArray(
                Enumerable.Range(0, (int)n).Select(_ => rng.Next(int.MinValue, int.MaxValue)).ToArray(), shape)));
        }
        tensors.Add(("special", Tensor.FromArray([float.NaN, float.PositiveInfinity, -0f, float.Epsilon, float.MaxValue], 5)));
        string path = Path.Combine(_dir, "rt.safetensors");
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode + \"quotes\"" };
        SafeTensorsWriter.Write(path, tensors, meta);

        using var f = new SafeTensorsFile(path);
        Assert.That(
            f.Metadata.Where(kv => kv.Key != SafeTensorsFile.DataSha256Key), Is.EquivalentTo(meta),
            "the caller's metadata, plus the data digest");
        Assert.That(f.Metadata[SafeTensorsFile.DataSha256Key], Has.Length.EqualTo(64));
        Assert.That(f.Tensors.Count, Is.EqualTo(tensors.Count));
        foreach (var (name, t) in tensors)
        {
            using var back = f.ReadTensor(name);
            Assert.That(back.ShapeArray, Is.EqualTo(t.ShapeArray), name);
            Assert.That(back.DType, Is.EqualTo(t.DType), name);
            if (t.DType == DType.I32) Assert.That(back.ToIntArray(), Is.EqualTo(t.ToIntArray()), name);
            else Assert.That(Bits(back.ToFloatArray()), Is.EqualTo(Bits(t.ToFloatArray())), name);
            t.Dispose();
        }
    }

    [Test]
    public void Bf16StorageGivesTheNearestBf16ValueOfEveryElement()
    {
        var rng = new Random(11);
        var x = RandomFloats(rng, 4000);
        string path = Path.Combine(_dir, "bf16.safetensors");
        using (var t = Tensor.FromArray(x, 40, 100)) SafeTensorsWriter.Write(path, [("w", t)], storeAs: DType.BF16);
        using var f = new SafeTensorsFile(path);
        Assert.That(f.Find("w").DType, Is.EqualTo(DType.BF16));
        Assert.That(f.Find("w").ByteLength, Is.EqualTo(8000));
        var y = f.ReadFloats("w");
        for (int i = 0; i < x.Length; i++)
        {
            uint b = (uint)BitConverter.SingleToInt32Bits(y[i]);
            Assert.That(b & 0xFFFF, Is.Zero, "a bf16 value has 16 zero low bits in f32");
            // The neighbours one bf16 ulp away must not be closer (checked in double, independent of Bf16.FromFloat).
            double err = Math.Abs((double)y[i] - x[i]);
            double up = BitConverter.Int32BitsToSingle((int)(b + 0x10000)), down = BitConverter.Int32BitsToSingle((int)(b - 0x10000));
            Assert.That(
                err, Is.LessThanOrEqualTo(Math.Abs(up - x[i])).And.LessThanOrEqualTo(Math.Abs(down - x[i])),
                $"element {i}: {x[i]} -> {y[i]}");
        }
    }

    [Test]
    public void F16StorageMatchesDotNetHalfConversion()
    {
        var x = RandomFloats(new Random(3), 300).Select(v => v % 70000f).ToArray();
        string path = Path.Combine(_dir, "f16.safetensors");
        using (var t = Tensor.FromArray(x, 300)) SafeTensorsWriter.Write(path, [("w", t)], storeAs: DType.F16);
        using var f = new SafeTensorsFile(path);
        Assert.That(f.ReadFloats("w"), Is.EqualTo(x.Select(v => (float)(Half)v).ToArray()));
    }

    [Test]
    public void StridedViewsAreWrittenContiguous()
    {
        using var w = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (float)i).ToArray(), 3, 4);
        var view = w.Transpose(0, 1).Narrow(0, 1, 2); // (2, 3): rows 1..2 of w^T
        string path = Path.Combine(_dir, "strided.safetensors");
        SafeTensorsWriter.Write(path, [("v", view)]);
        using var f = new SafeTensorsFile(path);
        Assert.That(f.Find("v").Shape, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(f.ReadFloats("v"), Is.EqualTo(new float[] { 1, 5, 9, 2, 6, 10 }));
    }

    [Test]
    public void HeaderLayoutFollowsTheReferenceImplementation()
    {
        // Written by hand from the reference's rules: metadata first, then larger elements first, then by name,
        // offsets contiguous, compact JSON padded with spaces to a multiple of 8. Our one addition: the data section's
        // SHA-256 in the metadata (keys in ordinal order).
        var data = new byte[] { 1, 0, 0, 0, 2, 0, 0, 0, 0x80, 0x3F, 0x00, 0xC0, 0x40, 0x40 };
        var digest = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data));
        using var b = Tensor.FromArray(new[] { 1, 2 }, 2);
        using var a = Tensor.FromArray(new[] { 1f, -2f }, 1, 2);
        using var c = Tensor.FromArray(new[] { 3f }, 1);
        string path = Path.Combine(_dir, "layout.safetensors");
        SafeTensorsWriter.Write(path, [("c", c), ("b", b), ("a", a)], new Dictionary<string, string> { ["format"] = "pt" }, DType.BF16);
        string json = "{\"__metadata__\":{\"format\":\"pt\",\"whittle_data_sha256\":\"" + digest + "\"}," +
                      "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}," +
                      "\"a\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]}," +
                      "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[12,14]}}";
        string padded = json + new string(' ', (8 - json.Length % 8) % 8);
        var bytes = File.ReadAllBytes(path);
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(bytes), Is.EqualTo((ulong)padded.Length));
        Assert.That(Encoding.UTF8.GetString(bytes, 8, padded.Length), Is.EqualTo(padded));
        Assert.That(bytes[(8 + padded.Length)..], Is.EqualTo(data));
    }

    // ------------------------------------------------------------------ checkpoints

    static List<(string, Tensor)> ModelLikeTensors(Random rng) =>
    [
        ("gpt_neox.embed_in.weight", Tensor.FromArray(RandomFloats(rng, 50 * 8), 50, 8)),
        ("gpt_neox.layers.0.attention.query_key_value.weight", Tensor.FromArray(RandomFloats(rng, 24 * 8), 24, 8)),
        ("gpt_neox.layers.0.attention.query_key_value.bias", Tensor.FromArray(RandomFloats(rng, 24), 24)),
        ("gpt_neox.layers.0.mlp.dense_h_to_4h.weight", Tensor.FromArray(RandomFloats(rng, 32 * 8), 32, 8)),
        ("gpt_neox.final_layer_norm.weight", Tensor.FromArray(RandomFloats(rng, 8), 8)),
        ("embed_out.weight", Tensor.FromArray(RandomFloats(rng, 50 * 8), 50, 8)),
        ("step", Tensor.FromArray(new[] { 17 }, 1)),
    ];

    [Test]
    public void ShardedCheckpointRoundTripsWithAHuggingFaceIndex()
    {
        var tensors = ModelLikeTensors(new Random(5));
        const long maxShard = 1200; // bytes: forces several shards; the 1600-byte embeddings each get their own
        CheckpointWriter.Write(_dir, tensors, maxShard);

        var shards = Directory.GetFiles(_dir, "model-*.safetensors").Select(Path.GetFileName).Order().ToArray();
        Assert.That(shards.Length, Is.GreaterThan(2));
        for (int i = 0; i < shards.Length; i++) Assert.That(shards[i], Is.EqualTo($"model-{i + 1:D5}-of-{shards.Length:D5}.safetensors"));
        Assert.That(File.Exists(Path.Combine(_dir, "model.safetensors")), Is.False);

        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "model.safetensors.index.json")))!;
        long expectedTotal = tensors.Sum(t => t.Item2.Count * 4);
        Assert.That((long)index["metadata"]!["total_size"]!, Is.EqualTo(expectedTotal));
        var map = index["weight_map"]!.AsObject();
        Assert.That(map.Select(kv => kv.Key), Is.EquivalentTo(tensors.Select(t => t.Item1)));
        foreach (var shard in shards)
        {
            using var f = new SafeTensorsFile(Path.Combine(_dir, shard!));
            Assert.That(f.Metadata["format"], Is.EqualTo("pt"), "transformers needs format=pt");
            long bytes = f.Tensors.Values.Sum(e => e.ByteLength);
            Assert.That(bytes <= maxShard || f.Tensors.Count == 1, $"{shard} holds {bytes} bytes in {f.Tensors.Count} tensors");
            foreach (var name in f.Tensors.Keys) Assert.That((string)map[name]!, Is.EqualTo(shard));
        }

        using var ck = new CheckpointReader(_dir);
        Assert.That(ck.IsSharded, Is.True);
        Assert.That(ck.Names, Is.EquivalentTo(tensors.Select(t => t.Item1)));
        foreach (var (name, t) in tensors)
        {
            Assert.That(ck.Contains(name));
            Assert.That(ck.Find(name).Shape, Is.EqualTo(t.ShapeArray));
            using var back = ck.ReadTensor(name);
            if (t.DType == DType.I32) Assert.That(back.ToIntArray(), Is.EqualTo(t.ToIntArray()));
            else
            {
                Assert.That(back.ToFloatArray(), Is.EqualTo(t.ToFloatArray()), name);
                var span = new float[t.Count];
                ck.ReadFloats(name, span);
                Assert.That(span, Is.EqualTo(t.ToFloatArray()), name);
            }
            t.Dispose();
        }
        var ex = Assert.Throws<InvalidFileException>(() => ck.Find("gpt_neox.layers.0.attention.query_key_value.weights"))!;
        Assert.That(
            ex.Message, Does.Contain("model.safetensors.index.json").And.Contain("'gpt_neox.layers.0.attention.query_key_value.weight'"));
    }

    [Test]
    public void SingleFileCheckpointReplacesAShardedOneAndViceVersa()
    {
        var tensors = ModelLikeTensors(new Random(9));
        CheckpointWriter.Write(_dir, tensors, maxShardBytes: 1000, storeAs: DType.BF16);
        CheckpointWriter.Write(_dir, tensors);
        Assert.That(File.Exists(Path.Combine(_dir, "model.safetensors")));
        Assert.That(File.Exists(Path.Combine(_dir, "model.safetensors.index.json")), Is.False, "a stale index is removed");
        using (var ck = new CheckpointReader(_dir))
        {
            Assert.That(ck.IsSharded, Is.False);
            Assert.That(ck.ReadFloats("embed_out.weight"), Is.EqualTo(tensors[5].Item2.ToFloatArray()));
        }
        CheckpointWriter.Write(_dir, tensors, maxShardBytes: 400);
        int manyShards = Directory.GetFiles(_dir, "model-*.safetensors").Length;
        CheckpointWriter.Write(_dir, tensors, maxShardBytes: 1000, storeAs: DType.BF16);
        Assert.That(File.Exists(Path.Combine(_dir, "model.safetensors")), Is.False, "model.safetensors would shadow the new shards");
        var left = Directory.GetFiles(_dir, "model-*.safetensors");
        Assert.That(left.Length, Is.LessThan(manyShards));
        Assert.That(left.All(f => f.EndsWith($"-of-{left.Length:D5}.safetensors")), "shards of the earlier save are removed");
        using (var ck = new CheckpointReader(_dir))
        {
            Assert.That(ck.IsSharded, Is.True);
            Assert.That(ck.Find("embed_out.weight").DType, Is.EqualTo(DType.BF16));
            Assert.That(ck.ReadFloats("embed_out.weight"),
                Is.EqualTo(tensors[5].Item2.ToFloatArray().Select(v => Bf16.ToFloat(Bf16.FromFloat(v))).ToArray()));
        }
        foreach (var (_, t) in tensors) t.Dispose();
    }

    [Test]
    public void CheckpointDirectoryErrorsNameTheFileAndTensor()
    {
        var ex = Assert.Throws<InvalidFileException>(() => new CheckpointReader(_dir))!;
        Assert.That(ex.Message, Does.Contain(_dir).And.Contain("model.safetensors").And.Contain("model.safetensors.index.json"));

        using (var t = Tensor.FromArray(new float[] { 1, 2 }, 2))
            SafeTensorsWriter.Write(Path.Combine(_dir, "shard-a.safetensors"), [("a", t)]);
        string index = Path.Combine(_dir, "model.safetensors.index.json");

        File.WriteAllText(index, """{"metadata":{"total_size":8},"weight_map":{"a":"shard-a.safetensors","b":"shard-b.safetensors"}}""");
        ex = Assert.Throws<InvalidFileException>(() => new CheckpointReader(_dir))!;
        Assert.That(ex.Message, Does.Contain(index).And.Contain("'b'").And.Contain("shard-b.safetensors").And.Contain("does not exist"));

        File.WriteAllText(index, """{"weight_map":{"a":"shard-a.safetensors","c":"shard-a.safetensors"}}""");
        ex = Assert.Throws<InvalidFileException>(() => new CheckpointReader(_dir))!;
        Assert.That(ex.Message, Does.Contain("'c'").And.Contain("shard-a.safetensors").And.Contain("does not contain"));

        File.WriteAllText(index, """{"weight_map":{"a":"../elsewhere.safetensors"}}""");
        ex = Assert.Throws<InvalidFileException>(() => new CheckpointReader(_dir))!;
        Assert.That(ex.Message, Does.Contain("../elsewhere.safetensors").And.Contain("same directory"));

        File.WriteAllText(index, """{"weight_map":[1,2]}""");
        ex = Assert.Throws<InvalidFileException>(() => new CheckpointReader(_dir))!;
        Assert.That(ex.Message, Does.Contain(index).And.Contain("weight_map"));

        File.WriteAllText(index, """{"weight_map":{"a":"shard-a.safetensors"}""");
        ex = Assert.Throws<InvalidFileException>(() => new CheckpointReader(_dir))!;
        Assert.That(ex.Message, Does.Contain(index).And.Contain("JSON"));
    }

    // ------------------------------------------------------------------ atomic writes

    static IEnumerable<(string, Tensor)> ThrowsAfterFirst(Tensor first)
    {
        yield return ("first", first);
        throw new InvalidOperationException("producer failed");
    }

    [Test]
    public void FailedWriteLeavesNoFileAndNoTempFiles()
    {
        string path = Path.Combine(_dir, "model.safetensors");
        using var t = Tensor.FromArray(new float[] { 1, 2, 3 }, 3);
        Assert.Throws<InvalidOperationException>(() => SafeTensorsWriter.Write(path, ThrowsAfterFirst(t)));
        Assert.That(Directory.GetFileSystemEntries(_dir), Is.Empty);

        // A failure while the data section is being written (the temp file exists by then): a disposed tensor.
        var dead = Tensor.FromArray(new float[] { 4, 5 }, 2);
        dead.Dispose();
        Assert.Throws<ObjectDisposedException>(() => SafeTensorsWriter.Write(path, [("a", t), ("b", dead)]));
        Assert.That(Directory.GetFileSystemEntries(_dir), Is.Empty);
    }

    [Test]
    public void FailedOverwriteKeepsThePreviousFileIntact()
    {
        string path = Path.Combine(_dir, "model.safetensors");
        using var t = Tensor.FromArray(new float[] { 1, 2, 3 }, 3);
        SafeTensorsWriter.Write(path, [("old", t)]);
        var before = File.ReadAllBytes(path);
        var dead = Tensor.FromArray(new float[] { 4, 5 }, 2);
        dead.Dispose();
        Assert.Throws<ObjectDisposedException>(() => SafeTensorsWriter.Write(path, [("new", t), ("x", dead)]));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName), Is.EqualTo(new[] { "model.safetensors" }));
    }

    // ------------------------------------------------------------------ bad files

    string Craft(string header, byte[]? data = null, ulong? headerLength = null, string name = "bad.safetensors")
    {
        var h = Encoding.UTF8.GetBytes(header);
        return CraftBytes(h, data ?? [], headerLength ?? (ulong)h.Length, name);
    }

    string CraftBytes(byte[] header, byte[] data, ulong headerLength, string name = "bad.safetensors")
    {
        string path = Path.Combine(_dir, name);
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static InvalidFileException OpenFails(string path)
    {
        var ex = Assert.Throws<InvalidFileException>(() => new SafeTensorsFile(path).Dispose())!;
        Assert.That(ex.Message, Does.StartWith(path + ":"), "the message names the file first");
        Assert.That(ex.Path, Is.EqualTo(path));
        return ex;
    }

    const string Ok = "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]";

    [Test]
    public void FileShorterThanEightBytes()
    {
        string path = Path.Combine(_dir, "short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
        Assert.That(OpenFails(path).Message, Does.Contain("5 bytes long"));
        File.WriteAllBytes(path, []);
        Assert.That(OpenFails(path).Message, Does.Contain("0 bytes long"));
    }

    [Test]
    public void MissingFile()
    {
        string path = Path.Combine(_dir, "nope.safetensors");
        Assert.That(OpenFails(path).Message, Does.Contain("no such file"));
    }

    [Test]
    public void HeaderLengthBeyondTheFileOrAbsurd()
    {
        var ex = OpenFails(Craft("{}", headerLength: 1000));
        Assert.That(ex.Message, Does.Contain("1000").And.Contain("only 2 bytes follow"));
        ex = OpenFails(Craft("{}", headerLength: 200_000_000));
        Assert.That(ex.Message, Does.Contain("200000000").And.Contain("at most 100000000"));
        ex = OpenFails(Craft("{}", headerLength: ulong.MaxValue));
        Assert.That(ex.Message, Does.Contain(ulong.MaxValue.ToString()));
    }

    [Test]
    public void HeaderNotUtf8JsonObject()
    {
        var ex = OpenFails(CraftBytes([(byte)'{', (byte)'"', 0xFF, 0xFE, (byte)'"', (byte)':', (byte)'1', (byte)'}'], [], 8));
        Assert.That(ex.Message, Does.Contain("not valid UTF-8"));
        ex = OpenFails(Craft("{\"a\": {\"dtype\": "));
        Assert.That(ex.Message, Does.Contain("not valid UTF-8 JSON"));
        ex = OpenFails(Craft("[1, 2, 3]"));
        Assert.That(ex.Message, Does.Contain("start with '{'"));
        ex = OpenFails(Craft("{\"a\":{" + Ok + "}} trailing", new byte[8]));
        Assert.That(ex.Message, Does.Contain("JSON"));
    }

    [TestCase("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "no 'dtype'")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "no 'shape'")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", "no 'data_offsets'")]
    [TestCase("{\"w\":[1,2]}", "JSON array; expected an object")]
    [TestCase("{\"w\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", "'dtype' is a JSON number")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", "'shape' is a JSON string")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", "shape[0] is 2.5")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", "data_offsets end is \"8\"")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", "expected [begin, end]")]
    [TestCase("{\"w\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype \"F31\"")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "shape[0] is -2; dimensions cannot be negative")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "reversed")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "beyond the data section, which is 8 bytes")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "F32(3) needs 12 bytes but data_offsets [0, 8] span 8")]
    [TestCase("{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", "BF16(3) needs 6 bytes")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,8]}}",
        "more elements than any file can hold")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", "beyond any file")]
    [TestCase("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "'dtype' twice")]
    [TestCase("{\"w\":{" + Ok + "},\"w\":{" + Ok + "}}", "listed twice")]
    public void BadTensorEntryNamesFileTensorAndProblem(string header, string problem)
    {
        var ex = OpenFails(Craft(header, new byte[8]));
        Assert.That(ex.Tensor, Is.EqualTo("w"));
        Assert.That(ex.Message, Does.Contain("tensor 'w'").And.Contain(problem));
    }

    [Test]
    public void OverlappingTensors()
    {
        var ex = OpenFails(
            Craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2]," +
            "\"data_offsets\":[4,12]}}", new byte[12]));
        Assert.That(ex.Message, Does.Contain("tensor 'b'").And.Contain("overlap tensor 'a'"));
    }

    [Test]
    public void HolesAndTrailingBytesAreErrorsAsTheSpecRequires()
    {
        var ex = OpenFails(
            Craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1]," +
            "\"data_offsets\":[8,12]}}", new byte[12]));
        Assert.That(ex.Message, Does.Contain("tensor 'b'").And.Contain("bytes [4, 8)").And.Contain("no tensor"));
        ex = OpenFails(Craft("{\"a\":{" + Ok + "}}", new byte[12]));
        Assert.That(ex.Message, Does.Contain("cover 8 bytes").And.Contain("12 bytes long"));
    }

    [Test]
    public void BadMetadata()
    {
        var ex = OpenFails(Craft("{\"__metadata__\":{\"format\":1},\"a\":{" + Ok + "}}", new byte[8]));
        Assert.That(ex.Message, Does.Contain("'format'").And.Contain("expected a string"));
        ex = OpenFails(Craft("{\"__metadata__\":[\"pt\"],\"a\":{" + Ok + "}}", new byte[8]));
        Assert.That(ex.Message, Does.Contain("__metadata__").And.Contain("array"));
    }

    [Test]
    public void EmptyTensorsMayShareAnOffsetAndAnEmptyFileIsValid()
    {
        using (var f = new SafeTensorsFile(
            Craft("{\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[8,8]}," +
            "\"a\":{" + Ok + "},\"z\":{\"dtype\":\"I32\",\"shape\":[0],\"data_offsets\":[0,0]}}  ", new byte[8])))
        {
            Assert.That(f.Tensors.Count, Is.EqualTo(3));
            Assert.That(f.ReadFloats("e"), Is.Empty);
            Assert.That(f.ReadInts("z"), Is.Empty);
        }
        using (var f = new SafeTensorsFile(Craft("{}      ", name: "empty.safetensors"))) Assert.That(f.Tensors, Is.Empty);
    }

    [Test]
    public void MissingTensorListsCloseNames()
    {
        string path = Path.Combine(_dir, "m.safetensors");
        using (var t = Tensor.FromArray(new float[] { 1 }, 1))
            SafeTensorsWriter.Write(
                path, new[] { "gpt_neox.layers.0.mlp.dense_h_to_4h.weight", "gpt_neox.layers.0.mlp.dense_4h_to_h.weight",
                "embed_out.weight", "gpt_neox.embed_in.weight" }.Select(n => (n, t)));
        using var f = new SafeTensorsFile(path);
        var ex = Assert.Throws<InvalidFileException>(() => f.ReadFloats("gpt_neox.layers.0.mlp.dense_h_to_4h.bias"))!;
        Assert.That(
            ex.Message, Does.StartWith(path).And.Contain("'gpt_neox.layers.0.mlp.dense_h_to_4h.bias'").And.Contain("no such tensor"));
        Assert.That(ex.Message, Does.Contain("closest names: 'gpt_neox.layers.0.mlp.dense_h_to_4h.weight'"), "nearest name first");
    }

    // ------------------------------------------------------------------ properties

    /// <summary>Opening and reading every tensor either works or fails with InvalidFileException; nothing else may escape.</summary>
    static bool OpensOrFailsCleanly(string path)
    {
        try
        {
            using var f = new SafeTensorsFile(path);
            foreach (var e in f.Tensors.Values)
            {
                try
                {
                    if (e.DType == DType.I32) f.ReadInts(e.Name);
                    else f.ReadFloats(e.Name);
                }
                catch (InvalidFileException) { }
            }
            return true;
        }
        catch (InvalidFileException) { return true; }
    }

    static readonly string[] JsonTokens =
    [
        "{", "}", "[", "]", ",", ":", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"F32\"", "\"BF16\"", "\"I32\"", "\"U8\"",
        "\"F4\"", "\"w\"", "\"__metadata__\"", "0", "4", "8", "-1", "1e3", "2.5", "99999999999999999999", "null", "true",
            "\"\\u0000\"", " ",
    ];

    static Gen<byte[]> ByteArrays => Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b));

    /// <summary>Headers made of JSON-ish tokens, under a length prefix that is right, off by a little, or random.</summary>
    static Gen<byte[]> TokenFiles =>
        from tokens in Gen.ArrayOf(Gen.Elements(JsonTokens))
        from data in ByteArrays
        from lenDelta in Gen.Choose(-3, 3)
        select Assemble("{" + string.Concat(tokens), data, lenDelta);

    static readonly string[] DTypeValues = ["\"F32\"", "\"BF16\"", "\"F16\"", "\"I32\"", "\"U8\"", "\"F4\"", "\"I64\"", "\"X9\""];
    static readonly string[] ShapeValues =
        ["[]", "[0]", "[1]", "[2]", "[3]", "[0,3]", "[2,2]", "[-1]", "[3000000000]", "[65536,65536,65536,65536,65536]", "[1.5]", "[\"2\"]"];
    static readonly string[] OffsetValues =
        ["[0,0]", "[0,2]", "[0,4]", "[0,8]", "[4,8]", "[8,12]", "[8,4]", "[0,16]", "[4,12]", "[0,18446744073709551615]",
            "[-4,0]", "[0,4,8]"];
    static readonly string[] WrongTypes = ["3", "null", "{}", "\"x\"", "true"];

    /// <summary>A field present with 90% probability, holding a value of its kind with 90% probability.</summary>
    static Gen<string> Field(string name, string[] values) =>
        Gen.Frequency(
            (1, Gen.Constant("")),
            (9, Gen.Frequency((9, Gen.Elements(values)), (1, Gen.Elements(WrongTypes))).Select(v => $"\"{name}\":{v}")));

    /// <summary>Well-formed JSON objects whose entries carry random (often wrong) dtypes, shapes and offsets: reaches the semantic
    /// checks.</summary>
    static Gen<byte[]> StructuredFiles =>
        from count in Gen.Choose(1, 4)
        from entries in Gen.ArrayOf(
            from name in Gen.Frequency((6, Gen.Elements("a", "b", "c")), (1, Gen.Constant("__metadata__")))
            from dtype in Field("dtype", DTypeValues)
            from shape in Field("shape", ShapeValues)
            from offsets in Field("data_offsets", OffsetValues)
            select name == "__metadata__"
                ? "\"__metadata__\":{\"format\":\"pt\"}"
                : $"\"{name}\":{{{string.Join(",", new[] { dtype, shape, offsets }.Where(f => f.Length > 0))}}}", count)
        from dataLength in Gen.Elements(0, 2, 4, 8, 12, 16)
        select Assemble("{" + string.Join(",", entries) + "}", new byte[dataLength], 0);

    static byte[] Assemble(string header, byte[] data, int lenDelta)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, Math.Max(0, h.Length + lenDelta));
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        return bytes;
    }

    int _case;
    string WriteCase(byte[] bytes)
    {
        string path = Path.Combine(_dir, $"case{_case++ % 4}.safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Test]
    public void PropertyArbitraryBytesNeverThrowAnythingButInvalidFile()
    {
        var prop = Prop.ForAll(
            Gen.OneOf(ByteArrays, TokenFiles, StructuredFiles, StructuredFiles).ToArbitrary(),
            bytes => OpensOrFailsCleanly(WriteCase(bytes)));
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(400), prop);
    }

    /// <summary>A random valid file: a few tensors of random dtype, shape and name, written by our writer.</summary>
    sealed record RandomFile(byte[] Bytes, Dictionary<string, float[]> Floats, Dictionary<string, int[]> Ints, DType FloatAs)
    {
        public override string ToString() => $"{Bytes.Length} bytes, {Floats.Count + Ints.Count} tensors, floats as {FloatAs}";
    }

    static Gen<int[]> SmallShape => Gen.Choose(0, 3).SelectMany(rank => Gen.ArrayOf(Gen.Choose(0, 4), rank));

    static Gen<RandomFile> ValidFiles(string scratchDir) =>
        from count in Gen.Choose(0, 4)
        from shapes in Gen.ArrayOf(SmallShape, count)
        from isInt in Gen.ArrayOf(Gen.Elements(false, true), count)
        from floatAs in Gen.Elements(DType.F32, DType.BF16, DType.F16)
        from seed in Gen.Choose(0, int.MaxValue)
        select MakeFile(scratchDir, shapes, isInt, floatAs, seed);

    static RandomFile MakeFile(string dir, int[][] shapes, bool[] isInt, DType floatAs, int seed)
    {
        var rng = new Random(seed);
        var floats = new Dictionary<string, float[]>();
        var ints = new Dictionary<string, int[]>();
        var tensors = new List<(string, Tensor)>();
        for (int i = 0; i < shapes.Length; i++)
        {
            string name = $"t{rng.Next(1000)}.{i}";
            long n = Tensor.Numel(shapes[i]);
            if (isInt[i])
            {
                var v = Enumerable.Range(0, (int)n).Select(_ => rng.Next()).ToArray();
                ints[name] = v; tensors.Add((name, Tensor.FromArray(v, shapes[i])));
            }
            else
            {
                // Values exactly representable in f16 and bf16, so any storage round-trips them exactly.
                var v = Enumerable.Range(0, (int)n).Select(_ => (float)rng.Next(-256, 256) / 4).ToArray();
                floats[name] = v; tensors.Add((name, Tensor.FromArray(v, shapes[i])));
            }
        }
        string path = Path.Combine(dir, $"valid-{Guid.NewGuid():N}.safetensors");
        SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["seed"] = seed.ToString() }, floatAs);
        foreach (var (_, t) in tensors) t.Dispose();
        var bytes = File.ReadAllBytes(path);
        File.Delete(path);
        return new RandomFile(bytes, floats, ints, floatAs);
    }

    [Test]
    public void PropertyValidRandomFilesRoundTrip()
    {
        var prop = Prop.ForAll(ValidFiles(_dir).ToArbitrary(), file =>
        {
            using var f = new SafeTensorsFile(WriteCase(file.Bytes));
            bool ok = f.Tensors.Count == file.Floats.Count + file.Ints.Count;
            foreach (var (name, v) in file.Floats)
                ok &= f.ReadFloats(name).SequenceEqual(v) && f.Find(name).DType == file.FloatAs;
            foreach (var (name, v) in file.Ints) ok &= f.ReadInts(name).SequenceEqual(v);
            return ok;
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(200), prop);
    }

    enum Mutation { Truncate, FlipHeaderByte, RandomLengthPrefix, NudgeLengthPrefix, FlipAnyByte }

    [Test]
    public void PropertyMutatedValidFilesNeverThrowAnythingButInvalidFile()
    {
        // A pool of valid files (each write is fsynced, so building one per case would dominate the run time).
        var pool = ValidFiles(_dir).Sample(40, 10).Select(f => f.Bytes).ToArray();
        Assert.That(pool, Has.Length.EqualTo(40));
        var mutated =
            from valid in Gen.Elements(pool)
            from mutation in Gen.Elements(Enum.GetValues<Mutation>())
            from at in Gen.Choose(0, int.MaxValue)
            from value in Gen.Choose(0, 255)
            from prefix in Gen.Elements(0UL, 1UL, 7UL, 100_000_001UL, ulong.MaxValue, (ulong)long.MaxValue + 3, 1UL << 40)
            select Mutate(valid, mutation, at, (byte)value, prefix);
        var prop = Prop.ForAll(mutated.ToArbitrary(), bytes => OpensOrFailsCleanly(WriteCase(bytes)));
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(400), prop);
    }

    static byte[] Mutate(byte[] valid, Mutation m, int at, byte value, ulong prefix)
    {
        var b = (byte[])valid.Clone();
        int headerLen = (int)BinaryPrimitives.ReadUInt64LittleEndian(b);
        switch (m)
        {
            case Mutation.Truncate: return b[..(at % b.Length)];
            case Mutation.FlipHeaderByte: b[8 + at % headerLen] = value; break;
            case Mutation.RandomLengthPrefix: BinaryPrimitives.WriteUInt64LittleEndian(b, prefix); break;
            case Mutation.NudgeLengthPrefix: BinaryPrimitives.WriteUInt64LittleEndian(
                b, (ulong)Math.Max(0, headerLen + (at % 17) - 8)); break;
            case Mutation.FlipAnyByte: b[at % b.Length] = value; break;
        }
        return b;
    }
}
