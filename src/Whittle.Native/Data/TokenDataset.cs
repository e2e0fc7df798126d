// Policy: a tokenized dataset on disk is a directory with meta.json and raw little-endian token shards
// ({split}-NNNN.bin, uint16 or uint32). Shards are memory-mapped, never read whole; every shard's length is checked
// against meta.json when opened, so a truncated or foreign file is an error up front, not garbage tokens later.
using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace Whittle.Native.Data;

public sealed record ShardInfo(string File, long Tokens);

public sealed record SplitInfo(long Documents, long Tokens, IReadOnlyList<ShardInfo> Shards);

/// <summary>The contents of meta.json.</summary>
public sealed record DatasetMeta(int Version, string TokenizerSha256, string TokenizerFile, int VocabSize, int EosId,
    string DType, double ValFraction, ulong Seed, string? DocStart, SplitInfo Train, SplitInfo Val)
{
    public const int CurrentVersion = 1;
    public int BytesPerToken => DType == "uint16" ? 2 : 4;

    internal void WriteTo(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("format", "whittle-tokens");
        w.WriteNumber("version", Version);
        w.WriteString("tokenizer_sha256", TokenizerSha256);
        w.WriteString("tokenizer_file", TokenizerFile);
        w.WriteNumber("vocab_size", VocabSize);
        w.WriteNumber("eos_id", EosId);
        w.WriteString("dtype", DType);
        w.WriteNumber("val_fraction", ValFraction);
        w.WriteNumber("seed", Seed);
        if (DocStart is null) w.WriteNull("doc_start"); else w.WriteString("doc_start", DocStart);
        foreach (var (name, s) in new[] { ("train", Train), ("val", Val) })
        {
            w.WriteStartObject(name);
            w.WriteNumber("documents", s.Documents);
            w.WriteNumber("tokens", s.Tokens);
            w.WriteStartArray("shards");
            foreach (var sh in s.Shards) { w.WriteStartObject(); w.WriteString("file", sh.File); w.WriteNumber("tokens", sh.Tokens); w.WriteEndObject(); }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    internal static DatasetMeta Read(string path)
    {
        try
        {
            InputFile.RequireRegular(path);
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var r = doc.RootElement;
            if (!r.TryGetProperty("format", out var f) || f.GetString() != "whittle-tokens")
                throw new InvalidFileException(path, "not a whittle token dataset (format is not \"whittle-tokens\")");
            int version = r.GetProperty("version").GetInt32();
            if (version != CurrentVersion) throw new InvalidFileException(path, $"dataset version {version}; this build reads version {CurrentVersion}");
            string dtype = r.GetProperty("dtype").GetString()!;
            if (dtype is not ("uint16" or "uint32")) throw new InvalidFileException(path, $"dtype '{dtype}' (expected uint16 or uint32)");
            SplitInfo Split(string name)
            {
                var s = r.GetProperty(name);
                var shards = s.GetProperty("shards").EnumerateArray()
                    .Select(e => new ShardInfo(e.GetProperty("file").GetString()!, e.GetProperty("tokens").GetInt64())).ToArray();
                return new SplitInfo(s.GetProperty("documents").GetInt64(), s.GetProperty("tokens").GetInt64(), shards);
            }
            var ds = r.GetProperty("doc_start");
            return new DatasetMeta(version, r.GetProperty("tokenizer_sha256").GetString()!, r.GetProperty("tokenizer_file").GetString()!,
                r.GetProperty("vocab_size").GetInt32(), r.GetProperty("eos_id").GetInt32(), dtype, r.GetProperty("val_fraction").GetDouble(),
                r.GetProperty("seed").GetUInt64(), ds.ValueKind == JsonValueKind.String ? ds.GetString() : null, Split("train"), Split("val"));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidFileException(path, $"malformed meta.json ({e.Message})");
        }
    }
}

public sealed class TokenDataset : IDisposable
{
    TokenDataset(string dir, DatasetMeta meta)
    {
        Directory = dir;
        Meta = meta;
        Train = new TokenStream(dir, meta, meta.Train);
        Val = new TokenStream(dir, meta, meta.Val);
    }

    public static TokenDataset Open(string dir)
    {
        var metaPath = Path.Combine(dir, "meta.json");
        if (!File.Exists(metaPath)) throw new WhittleException($"{dir}: not a token dataset (no meta.json); create one with `whittle tokenize`");
        return new TokenDataset(dir, DatasetMeta.Read(metaPath));
    }

    public string Directory { get; }
    public DatasetMeta Meta { get; }
    public TokenStream Train { get; }
    public TokenStream Val { get; }

    /// <summary>Throws unless the dataset was made with the tokenizer whose file hash is sha256 (described by what, e.g. a path).</summary>
    public void RequireTokenizer(string sha256, string what)
    {
        if (!string.Equals(sha256, Meta.TokenizerSha256, StringComparison.OrdinalIgnoreCase))
            throw new WhittleException($"{Directory}: dataset was tokenized with tokenizer sha256 {Meta.TokenizerSha256[..12]}… ({Meta.TokenizerFile}) but {what} has sha256 {sha256[..Math.Min(12, sha256.Length)]}…; re-run `whittle tokenize` with that tokenizer");
    }

    public void Dispose() { Train.Dispose(); Val.Dispose(); }
}

/// <summary>One split as a single sequence of token ids spanning its shards.</summary>
public sealed unsafe class TokenStream : IDisposable, Whittle.Native.Evaluation.ITokenSource
{
    readonly List<(MemoryMappedFile File, MemoryMappedViewAccessor View, nint Ptr, long Start, long Count)> _shards = new();
    readonly int _bytesPerToken;

    internal TokenStream(string dir, DatasetMeta meta, SplitInfo split)
    {
        _bytesPerToken = meta.BytesPerToken;
        long start = 0;
        foreach (var sh in split.Shards)
        {
            var path = Path.Combine(dir, sh.File);
            if (!File.Exists(path)) throw new InvalidFileException(path, "shard listed in meta.json is missing");
            InputFile.RequireRegular(path);
            long expected = sh.Tokens * _bytesPerToken, actual = new FileInfo(path).Length;
            if (actual != expected)
                throw new InvalidFileException(path, $"shard is {actual} bytes but meta.json says {sh.Tokens} {meta.DType} tokens ({expected} bytes){(actual < expected ? ": truncated" : "")}");
            if (sh.Tokens == 0) continue;
            var mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            var view = mmf.CreateViewAccessor(0, expected, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _shards.Add((mmf, view, (nint)(p + view.PointerOffset), start, sh.Tokens));
            start += sh.Tokens;
        }
        if (start != split.Tokens) throw new InvalidFileException(Path.Combine(dir, "meta.json"), $"shard token counts sum to {start}, split says {split.Tokens}");
        Length = start;
    }

    public long Length { get; }

    /// <summary>Copies tokens [start, start + dest.Length) into dest.</summary>
    public void Read(long start, Span<int> dest)
    {
        if (start < 0 || start + dest.Length > Length) throw new ArgumentOutOfRangeException(nameof(start), $"range [{start}, {start + dest.Length}) outside a stream of {Length} tokens");
        int done = 0;
        foreach (var sh in _shards)
        {
            if (done == dest.Length) break;
            long pos = start + done;
            if (pos >= sh.Start + sh.Count) continue;
            long off = pos - sh.Start;
            int n = (int)Math.Min(dest.Length - done, sh.Count - off);
            var d = dest.Slice(done, n);
            if (_bytesPerToken == 2)
            {
                var src = new ReadOnlySpan<ushort>((byte*)sh.Ptr + off * 2, n);
                for (int i = 0; i < n; i++) d[i] = src[i];
            }
            else new ReadOnlySpan<int>((byte*)sh.Ptr + off * 4, n).CopyTo(d);
            done += n;
        }
    }

    public void Dispose()
    {
        foreach (var sh in _shards) { sh.View.SafeMemoryMappedViewHandle.ReleasePointer(); sh.View.Dispose(); sh.File.Dispose(); }
        _shards.Clear();
    }
}
