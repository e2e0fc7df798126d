// Reads one .safetensors file (Hugging Face's format: u64 little-endian header length N, N bytes of UTF-8 JSON,
// then the data section). Policy: the file is memory-mapped read-only and validated completely when opened, the
// way the reference implementation (huggingface/safetensors, Rust) validates it, so that every later read is a
// plain bounds-safe copy. Anything wrong with the file is an InvalidFileException naming the file, the tensor and
// what was expected versus found; nothing else escapes from parsing, whatever the bytes are.
// Rules taken from the spec and the reference reader:
//  - header length <= 100,000,000 bytes and within the file; the header is one JSON object;
//  - "__metadata__" (optional) maps strings to strings; every other key is a tensor with exactly a dtype string,
//    a shape array of non-negative integers and data_offsets [begin, end] relative to the data section;
//  - (end - begin) = element count x element size; 0-d tensors (shape []) hold one element, empty tensors none;
//  - the tensors tile the data section exactly: no overlaps, no holes, nothing after the last tensor
//    (the reference's "MetadataIncompleteBuffer": the buffer must be entirely indexed, which rules out polyglot files).
using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;
using System.Text.Json;
using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>
/// One tensor listed in a safetensors header. <see cref="DType"/> is null for dtypes the engine does not compute in
/// (F64, I64, U8, BOOL, ...): such tensors are listed but cannot be read as floats or ints.
/// </summary>
public sealed record TensorEntry(string Name, string DTypeName, DType? DType, int[] Shape, long FileOffset, long ByteLength)
{
    public long Count => Tensor.Numel(Shape);
    public string Describe() => $"{DTypeName}{Tensor.FormatShape(Shape)}";
}

public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>The reference implementation refuses larger headers (a guard against JSON bombs).</summary>
    public const long MaxHeaderBytes = 100_000_000;
    public const string MetadataKey = "__metadata__";
    /// <summary>Metadata entry whittle writes: lowercase hex SHA-256 of the data section, verified on open when present.</summary>
    public const string DataSha256Key = "whittle_data_sha256";

    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    byte* _base;               // byte 0 of the file, null once disposed (or for a file we never mapped)
    readonly long _fileLength;

    public string Path { get; }
    public IReadOnlyDictionary<string, TensorEntry> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>File offset of the data section: 8 + header length.</summary>
    public long DataStart { get; }

    public SafeTensorsFile(string path)
    {
        Path = path;
        InputFile.RequireRegular(path);   // a FIFO would block the open below; a device has no end
        FileStream stream;
        try { stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read); }
        catch (FileNotFoundException) { throw new InvalidFileException(path, "no such file"); }
        catch (DirectoryNotFoundException) { throw new InvalidFileException(path, "no such file (its directory does not exist)"); }
        catch (UnauthorizedAccessException e) { throw new InvalidFileException(path, $"cannot be opened for reading: {e.Message}"); }
        catch (IOException e) { throw new InvalidFileException(path, $"cannot be opened for reading: {e.Message}"); }

        try
        {
            _fileLength = stream.Length;
            if (_fileLength < 8)
                throw new InvalidFileException(
                    path, $"is {_fileLength} bytes long; a safetensors file starts with an 8-byte header length");
            // MemoryMappedFile takes ownership of the stream (leaveOpen: false).
            _map = MemoryMappedFile.CreateFromFile(
                stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            _view = _map.CreateViewAccessor(0, _fileLength, MemoryMappedFileAccess.Read);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + _view.PointerOffset;
        }
        catch
        {
            DisposeMapping();
            stream.Dispose();
            throw;
        }

        try
        {
            var (tensors, metadata, dataStart) = SafeTensorsHeader.Parse(
                path, new ReadOnlySpan<byte>(_base, (int)Math.Min(_fileLength, 8 + MaxHeaderBytes)), _fileLength);
            Tensors = tensors; Metadata = metadata; DataStart = dataStart;
            VerifyDataDigest();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>
    /// Optional integrity (issue 14): a file whittle wrote names the SHA-256 of its data section in __metadata__; a
    /// flipped weight byte then fails here, naming the file, instead of being used. Files without the entry (Hugging
    /// Face's) are not checked. Hashing runs at several GB/s (SHA extensions), small next to what loading costs anyway.
    /// </summary>
    void VerifyDataDigest()
    {
        if (!Metadata.TryGetValue(DataSha256Key, out var want)) return;
        if (want.Length != 64 || !want.All(char.IsAsciiHexDigitLower))
            throw new InvalidFileException(
                Path, $"'{MetadataKey}' entry '{DataSha256Key}' is '{ErrorText.Clip(want, 80)}'; expected 64 lowercase hex digits (a " +
                $"SHA-256)");
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        for (long at = DataStart; at < _fileLength;)
        {
            int n = (int)Math.Min(1 << 30, _fileLength - at);
            hash.AppendData(new ReadOnlySpan<byte>(_base + at, n));
            at += n;
        }
        var got = Convert.ToHexStringLower(hash.GetHashAndReset());
        if (got != want)
            throw new InvalidFileException(
                Path, $"data does not match the SHA-256 recorded in its header ({DataSha256Key} {want[..12]}…, data {got[..12]}…): the " +
                $"file is corrupt; restore it or rewrite it");
    }

    public TensorEntry this[string name] => Find(name);

    /// <summary>The entry for <paramref name="name"/>, or an error listing the closest names in the file.</summary>
    public TensorEntry Find(string name) =>
        Tensors.TryGetValue(name, out var e) ? e : throw MissingTensor(Path, name, Tensors.Keys);

    public bool Contains(string name) => Tensors.ContainsKey(name);

    public float[] ReadFloats(string name)
    {
        var e = Find(name);
        CheckHostSize(e);
        var result = new float[e.Count];
        ReadFloats(e, result);
        return result;
    }

    /// <summary>Converts an F32, F16 or BF16 tensor to f32 into <paramref name="dst"/> (length = element count).</summary>
    public void ReadFloats(string name, Span<float> dst) => ReadFloats(Find(name), dst);

    public int[] ReadInts(string name)
    {
        var e = Find(name);
        if (e.DType != DType.I32)
            throw new InvalidFileException(Path, $"is {e.DTypeName}{Tensor.FormatShape(e.Shape)}; expected I32 integers", name);
        CheckHostSize(e);
        var result = new int[e.Count];
        Bytes(e).CopyTo(MemoryMarshal.AsBytes(result.AsSpan()));
        return result;
    }

    /// <summary>A new CPU tensor named after the checkpoint entry: f32 for F32/F16/BF16, i32 for I32.</summary>
    public Tensor ReadTensor(string name)
    {
        var e = Find(name);
        CheckHostSize(e);
        if (e.DType == DType.I32)
        {
            var t = Tensor.Empty(DType.I32, e.Shape);
            t.Name = name;
            Bytes(e).CopyTo(MemoryMarshal.AsBytes(t.AsSpan<int>()));
            return t;
        }
        var f = Tensor.Empty(DType.F32, e.Shape);
        f.Name = name;
        try { ReadFloats(e, f.AsSpan<float>()); }
        catch { f.Dispose(); throw; }
        return f;
    }

    internal void ReadFloats(TensorEntry e, Span<float> dst)
    {
        if (dst.Length != e.Count)
            throw new ArgumentException($"{Path}: tensor '{ErrorText.Clip(e.Name)}' {e.Describe()} has {e.Count} elements; the " +
                $"destination holds {dst.Length}");
        if (e.DType is not (DType.F32 or DType.F16 or DType.BF16))
            throw new InvalidFileException(Path, $"is {e.Describe()}; expected a floating-point dtype (F32, F16 or BF16)", e.Name);
        // Converted in blocks so byte spans stay well inside int range even for multi-GB tensors.
        const int Block = 1 << 20;
        for (long start = 0; start < e.Count; start += Block)
        {
            int n = (int)Math.Min(Block, e.Count - start);
            var d = dst.Slice((int)start, n);
            switch (e.DType)
            {
                case DType.F32:
                    Bytes(e, start * 4, n * 4L).CopyTo(MemoryMarshal.AsBytes(d));
                    break;
                case DType.F16:
                    TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(Bytes(e, start * 2, n * 2L)), d);
                    break;
                case DType.BF16:
                    Bf16ToF32(MemoryMarshal.Cast<byte, ushort>(Bytes(e, start * 2, n * 2L)), d);
                    break;
            }
        }
    }

    /// <summary>bf16 is the top half of an f32: widen and shift, 16 at a time where the CPU has 256-bit vectors.</summary>
    static void Bf16ToF32(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var bits = MemoryMarshal.Cast<float, uint>(dst);
            for (; i + 16 <= src.Length; i += 16)
            {
                var (lower, upper) = Vector256.Widen(Vector256.Create(src.Slice(i, 16)));
                (lower << 16).CopyTo(bits.Slice(i, 8));
                (upper << 16).CopyTo(bits.Slice(i + 8, 8));
            }
        }
        for (; i < src.Length; i++) dst[i] = Bf16.ToFloat(src[i]);
    }

    void CheckHostSize(TensorEntry e)
    {
        if (e.Count * 4 > Array.MaxLength)
            throw new InvalidFileException(
                Path, $"{e.Describe()} has {e.Count} elements, more than one CPU tensor can hold ({Array.MaxLength} bytes)", e.Name);
    }

    ReadOnlySpan<byte> Bytes(TensorEntry e) => Bytes(e, 0, e.ByteLength);

    ReadOnlySpan<byte> Bytes(TensorEntry e, long start, long length)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        // Offsets were validated against the file length at open; this guards the arithmetic, not the file.
        if (start < 0 || length < 0 || start + length > e.ByteLength) throw new ArgumentOutOfRangeException(nameof(start));
        return new ReadOnlySpan<byte>(_base + e.FileOffset + start, checked((int)length));
    }

    internal static InvalidFileException MissingTensor(string path, string name, IEnumerable<string> names)
    {
        var close = ClosestNames(name, names, 3);
        string hint = close.Count == 0 ? "the file lists no tensors" : "closest " +
            "names: " + string.Join(", ", close.Select(n => $"'{ErrorText.Clip(n)}'"));
        return new InvalidFileException(path, $"no such tensor ({hint})", name);
    }

    /// <summary>The names nearest to <paramref name="name"/> by edit distance (ties broken by name).</summary>
    internal static List<string> ClosestNames(string name, IEnumerable<string> names, int count) =>
        names.Select(n => (n, d: EditDistance(name, n))).OrderBy(x => x.d).ThenBy(x => x.n, StringComparer.Ordinal)
             .Take(count).Select(x => x.n).ToList();

    static int EditDistance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }

    void DisposeMapping()
    {
        if (_base != null) { _view!.SafeMemoryMappedViewHandle.ReleasePointer(); _base = null; }
        _view?.Dispose();
        _map?.Dispose();
    }

    public void Dispose() => DisposeMapping();
}

/// <summary>The header parser and validator, separate from the mapping so it sees only a span and the file length.</summary>
static class SafeTensorsHeader
{
    /// <summary>Every dtype name the safetensors spec defines, with its size in bits.</summary>
    static readonly Dictionary<string, int> KnownDTypeBits = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 8, ["U8"] = 8, ["I8"] = 8, ["F8_E5M2"] = 8, ["F8_E4M3"] = 8, ["F8_E8M0"] = 8,
        ["I16"] = 16, ["U16"] = 16, ["F16"] = 16, ["BF16"] = 16,
        ["I32"] = 32, ["U32"] = 32, ["F32"] = 32,
        ["I64"] = 64, ["U64"] = 64, ["F64"] = 64, ["C64"] = 64,
        ["F4"] = 4, ["F6_E2M3"] = 6, ["F6_E3M2"] = 6,
    };

    static DType? EngineDType(string name) => name switch
    {
        "F32" => DType.F32, "BF16" => DType.BF16, "F16" => DType.F16, "I32" => DType.I32, _ => null,
    };

    /// <param name="prefix">The first bytes of the file (at least 8; up to 8 + MaxHeaderBytes).</param>
    public static (Dictionary<string, TensorEntry> Tensors, Dictionary<string, string> Metadata, long DataStart)
        Parse(string path, ReadOnlySpan<byte> prefix, long fileLength)
    {
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLen > SafeTensorsFile.MaxHeaderBytes)
            throw new InvalidFileException(
                path, $"header length field says {headerLen} bytes; the format allows at most {SafeTensorsFile.MaxHeaderBytes} (not a " +
                $"safetensors file, or a corrupt one)");
        if ((long)headerLen > fileLength - 8)
            throw new InvalidFileException(
                path, $"header length field says {headerLen} bytes but only {fileLength - 8} bytes follow it (truncated file?)");
        if (headerLen < 2)
            throw new InvalidFileException(path, $"header is {headerLen} bytes; expected a JSON object of at least 2 bytes");
        var header = prefix.Slice(8, (int)headerLen);
        if (header[0] != (byte)'{')
            throw new InvalidFileException(path, $"header should start with '{{' but starts with byte 0x{header[0]:X2}");

        long dataStart = 8 + (long)headerLen;
        long dataLength = fileLength - dataStart;

        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new InvalidFileException(path, "header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (Exception e) when (e is JsonException or ArgumentException or DecoderFallbackException)
        {
            throw new InvalidFileException(path, $"header is not valid UTF-8 JSON: {OneLine(e.Message)}");
        }

        using (doc)
        {
            // The root is an object: the header starts with '{' and parsed as one JSON value.
            var tensors = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == SafeTensorsFile.MetadataKey)
                {
                    if (sawMetadata) throw new InvalidFileException(path, $"header has '{SafeTensorsFile.MetadataKey}' twice");
                    sawMetadata = true;
                    ParseMetadata(path, prop.Value, metadata);
                    continue;
                }
                if (tensors.ContainsKey(prop.Name))
                    throw new InvalidFileException(path, "is listed twice in the header (duplicate keys are not allowed)", prop.Name);
                tensors.Add(prop.Name, ParseEntry(path, prop.Name, prop.Value, dataStart, dataLength));
            }
            CheckTiling(path, tensors.Values, dataStart, dataLength);
            return (tensors, metadata, dataStart);
        }
    }

    static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw new InvalidFileException(path, $"'{SafeTensorsFile.MetadataKey}' is a JSON {Kind(value)}; expected an object of strings");
        foreach (var m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new InvalidFileException(
                    path, $"'{SafeTensorsFile.MetadataKey}' entry '{ErrorText.Clip(m.Name)}' is a JSON {Kind(m.Value)}; expected a string");
            if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                throw new InvalidFileException(path, $"'{SafeTensorsFile.MetadataKey}' lists '{ErrorText.Clip(m.Name)}' twice");
        }
    }

    static TensorEntry ParseEntry(string path, string name, JsonElement value, long dataStart, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new InvalidFileException(
                path, $"header entry is a JSON {Kind(value)}; expected an object with dtype, shape and data_offsets", name);
        JsonElement? dtypeEl = null, shapeEl = null, offsetsEl = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in value.EnumerateObject())
        {
            switch (f.Name)
            {
                case "dtype": dtypeEl = f.Value; break;
                case "shape": shapeEl = f.Value; break;
                case "data_offsets": offsetsEl = f.Value; break;
                default: continue; // the reference reader ignores fields it does not know
            }
            if (!seen.Add(f.Name)) throw new InvalidFileException(path, $"header entry has '{ErrorText.Clip(f.Name)}' twice", name);
        }
        if (dtypeEl is null) throw new InvalidFileException(path, "header entry has no 'dtype'", name);
        if (shapeEl is null) throw new InvalidFileException(path, "header entry has no 'shape'", name);
        if (offsetsEl is null) throw new InvalidFileException(path, "header entry has no 'data_offsets'", name);

        var d = dtypeEl.Value;
        if (d.ValueKind != JsonValueKind.String)
            throw new InvalidFileException(path, $"'dtype' is a JSON {Kind(d)}; expected a string such as \"F32\"", name);
        string dtypeName = d.GetString()!;
        if (!KnownDTypeBits.TryGetValue(dtypeName, out int bits))
            throw new InvalidFileException(
                path, $"unknown dtype \"{dtypeName}\"; expected one of {string.Join(", ", KnownDTypeBits.Keys)}", name);

        var s = shapeEl.Value;
        if (s.ValueKind != JsonValueKind.Array)
            throw new InvalidFileException(path, $"'shape' is a JSON {Kind(s)}; expected an array of non-negative integers", name);
        var shape = new int[s.GetArrayLength()];
        int k = 0;
        foreach (var dim in s.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long v))
                throw new InvalidFileException(path, $"shape[{k}] is {Raw(dim)}; expected a non-negative integer", name);
            if (v < 0) throw new InvalidFileException(path, $"shape[{k}] is {v}; dimensions cannot be negative", name);
            if (v > int.MaxValue)
                throw new InvalidFileException(path, $"shape[{k}] is {v}; dimensions above {int.MaxValue} are not supported", name);
            shape[k++] = (int)v;
        }

        var o = offsetsEl.Value;
        if (o.ValueKind != JsonValueKind.Array || o.GetArrayLength() != 2)
            throw new InvalidFileException(path, $"'data_offsets' is {Raw(o)}; expected [begin, end]", name);
        long begin = OffsetValue(path, name, o[0], "begin"), end = OffsetValue(path, name, o[1], "end");
        if (end < begin) throw new InvalidFileException(path, $"data_offsets [{begin}, {end}] are reversed (end before begin)", name);
        if (end > dataLength)
            throw new InvalidFileException(
                path, $"data_offsets [{begin}, {end}] reach beyond the data section, which is {dataLength} bytes (truncated file?)", name);

        // Element count, guarding against overflow: a zero dimension anywhere makes it 0.
        long count = 1;
        bool anyZero = Array.IndexOf(shape, 0) >= 0;
        if (!anyZero)
            foreach (int dim in shape)
            {
                if (count > long.MaxValue / 64 / dim)
                    throw new InvalidFileException(
                        path, $"shape {Tensor.FormatShape(shape)} has more elements than any file can hold", name);
                count *= dim;
            }
        else count = 0;
        long bitCount = count * bits;
        if (bitCount % 8 != 0)
            throw new InvalidFileException(path, $"{dtypeName}{Tensor.FormatShape(shape)} does not fill a whole number of bytes", name);
        long expected = bitCount / 8;
        if (expected != end - begin)
            throw new InvalidFileException(
                path, $"{dtypeName}{Tensor.FormatShape(shape)} needs {expected} bytes but data_offsets [{begin}, {end}] span " +
                $"{end - begin}", name);

        return new TensorEntry(name, dtypeName, EngineDType(dtypeName), shape, dataStart + begin, end - begin);
    }

    static long OffsetValue(string path, string name, JsonElement e, string which)
    {
        if (e.ValueKind != JsonValueKind.Number)
            throw new InvalidFileException(path, $"data_offsets {which} is {Raw(e)}; expected a non-negative integer", name);
        if (e.TryGetInt64(out long v) && v >= 0) return v;
        if (e.TryGetUInt64(out ulong _)) throw new InvalidFileException(path, $"data_offsets {which} is {Raw(e)}, beyond any file", name);
        throw new InvalidFileException(path, $"data_offsets {which} is {Raw(e)}; expected a non-negative integer", name);
    }

    /// <summary>The tensors must cover [0, dataLength) exactly once: overlaps, holes and trailing bytes are errors.</summary>
    static void CheckTiling(string path, IEnumerable<TensorEntry> entries, long dataStart, long dataLength)
    {
        long covered = 0;
        TensorEntry? previous = null;
        foreach (var e in entries.OrderBy(e => e.FileOffset).ThenBy(e => e.ByteLength).ThenBy(e => e.Name, StringComparer.Ordinal))
        {
            long begin = e.FileOffset - dataStart, end = begin + e.ByteLength;
            if (begin < covered)
                throw new InvalidFileException(
                    path, $"data_offsets [{begin}, {end}] overlap tensor '{ErrorText.Clip(previous!.Name)}', which ends at " +
                    $"{covered}", e.Name);
            if (begin > covered)
                throw new InvalidFileException(
                    path, $"data_offsets [{begin}, {end}] leave bytes [{covered}, {begin}) of the data section belonging to no tensor; " +
                    $"the format requires the tensors to cover the data section without holes", e.Name);
            covered = end;
            if (e.ByteLength > 0) previous = e;
        }
        if (covered != dataLength)
            throw new InvalidFileException(
                path, $"the tensors cover {covered} bytes of the data section but it is {dataLength} bytes long; the format forbids " +
                $"bytes after the last tensor");
    }

    static string Kind(JsonElement e) => e.ValueKind.ToString().ToLowerInvariant();

    static string Raw(JsonElement e)
    {
        string raw = e.GetRawText();
        return raw.Length <= 40 ? raw : raw[..40] + "...";
    }

    static string OneLine(string s) => s.Replace('\n', ' ').Replace('\r', ' ');
}
