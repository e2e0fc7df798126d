// Policy: a tokenized dataset on disk is a directory with meta.json and raw little-endian token shards
// ({split}-NNNN.bin, uint16 or uint32). Shards are memory-mapped, never read whole; every shard's length is checked
// against meta.json when opened, so a truncated or foreign file is an error up front, not garbage tokens later.
// A dataset is untrusted input: meta.json is read field by field (JsonField), sizes are compared without overflow,
// shard names are confined to the directory, and every token id is checked against vocab_size as it is read.
using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace Whittle.Native.Data;

public sealed record ShardInfo(string File, long Tokens);

public sealed record SplitInfo(long Documents, long Tokens, IReadOnlyList<ShardInfo> Shards);

/// <summary>
/// The contents of meta.json. <see cref="DocumentPrefix"/> and <see cref="DocumentSuffix"/> are the ids `tokenize` put
/// before and after every document: the tokenizer's template around a single sequence (BOS for Llama 3, Llama 2,
/// Mistral), then EOS unless the template ends with it. Null for datasets written before they were recorded.
/// </summary>
public sealed record DatasetMeta(int Version, string TokenizerSha256, string TokenizerFile, int VocabSize, int EosId,
    string DType, double ValFraction, ulong Seed, string? DocStart, SplitInfo Train, SplitInfo Val, int[]? DocumentPrefix = null,
    int[]? DocumentSuffix = null)
{
    public const int CurrentVersion = 1;
    public int BytesPerToken => DType == "uint16" ? 2 : 4;

    /// <summary>
    /// The bos_token_id of a new model trained on this dataset: the token every document starts with when the template
    /// puts one there (Llama's BOS), else EOS, the GPT-2 / GPT-NeoX convention (their configs name &lt;|endoftext|&gt; for both).
    /// </summary>
    public int BosId => DocumentPrefix is [var first, ..] ? first : EosId;

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
        foreach (var (name, ids) in new[] { ("document_prefix", DocumentPrefix), ("document_suffix", DocumentSuffix) })
        {
            if (ids is null) continue;
            w.WriteStartArray(name);
            foreach (var id in ids) w.WriteNumberValue(id);
            w.WriteEndArray();
        }
        foreach (var (name, s) in new[] { ("train", Train), ("val", Val) })
        {
            w.WriteStartObject(name);
            w.WriteNumber("documents", s.Documents);
            w.WriteNumber("tokens", s.Tokens);
            w.WriteStartArray("shards");
            foreach (var sh in s.Shards)
            {
                w.WriteStartObject();
                w.WriteString("file", sh.File);
                w.WriteNumber("tokens", sh.Tokens);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    internal static DatasetMeta Read(string path)
    {
        var r = JsonField.Load(path).RequireObject();
        if (r["format"].Kind != JsonValueKind.String || r["format"].String() != "whittle-tokens")
            throw new InvalidFileException(path, "not a whittle token dataset (format is not \"whittle-tokens\")");
        int version = r["version"].Int();
        if (version != CurrentVersion)
            throw new InvalidFileException(path, $"dataset version {version}; this build reads version {CurrentVersion}");
        string dtype = r["dtype"].String();
        if (dtype is not ("uint16" or "uint32")) throw r["dtype"].Error($"is '{JsonField.Truncate(dtype)}' (expected uint16 or uint32)");
        // A uint16 shard cannot hold ids above 65535; the bound also keeps vocab_size within what a model can embed.
        int vocab = r["vocab_size"].Int(1, dtype == "uint16" ? 1 << 16 : Tokenization.TokenizerLoader.MaxTokenId + 1);
        int eos = r["eos_id"].Int(0, vocab - 1);
        SplitInfo Split(string name)
        {
            var s = r[name].RequireObject();
            var shards = s["shards"].Items().Select(e => new ShardInfo(e["file"].String(), e["tokens"].Long(0))).ToArray();
            return new SplitInfo(s["documents"].Long(0), s["tokens"].Long(0), shards);
        }
        return new DatasetMeta(version, r["tokenizer_sha256"].Sha256Hex(), r["tokenizer_file"].String(), vocab, eos, dtype,
            r["val_fraction"].Double(), r["seed"].ULong(),
            r["doc_start"].StringOrNull(), Split("train"), Split("val"), Ids("document_prefix"), Ids("document_suffix"));
        // Optional (absent before they were recorded); at most a template's worth of ids, each in the vocabulary.
        int[]? Ids(string key) => r[key].IsAbsent ? null
            : r[key].Items().Take(65).Select(e => e.Int(0, vocab - 1)).ToArray() is { Length: <= 64 } ids ? ids
            : throw r[key].Error("holds more than 64 ids; a document's special tokens are a handful");
    }
}

public sealed class TokenDataset : IDisposable
{
    TokenDataset(string dir, DatasetMeta meta)
    {
        Directory = dir;
        Meta = meta;
        Train = new TokenStream(dir, meta, meta.Train);
        try { Val = new TokenStream(dir, meta, meta.Val); }
        catch { Train.Dispose(); throw; }
    }

    public static TokenDataset Open(string dir)
    {
        var metaPath = Path.Combine(dir, "meta.json");
        if (!File.Exists(metaPath))
            throw new WhittleException($"{dir}: not a token dataset (no meta.json); create one with `whittle tokenize`");
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
            throw new WhittleException($"{Directory}: dataset was tokenized with tokenizer sha256 {Meta.TokenizerSha256[..12]}… " +
                $"({Meta.TokenizerFile}) but {what} has sha256 {sha256[..Math.Min(12, sha256.Length)]}…; re-run `whittle tokenize` with " +
                $"that tokenizer");
    }

    public void Dispose() { Train.Dispose(); Val.Dispose(); }
}

/// <summary>One split as a single sequence of token ids spanning its shards.</summary>
public sealed unsafe class TokenStream : IDisposable, ITokenSource
{
    readonly List<(MemoryMappedFile File, MemoryMappedViewAccessor View, nint Ptr, long Start, long Count, string Path)> _shards = new();
    readonly int _bytesPerToken;
    readonly int _vocabSize;

    internal TokenStream(string dir, DatasetMeta meta, SplitInfo split)
    {
        _bytesPerToken = meta.BytesPerToken;
        _vocabSize = meta.VocabSize;
        var metaPath = Path.Combine(dir, "meta.json");
        long start = 0;
        try
        {
            foreach (var sh in split.Shards)
            {
                var path = ShardPath(dir, sh.File, metaPath);
                if (!File.Exists(path)) throw new InvalidFileException(path, "shard listed in meta.json is missing");
                InputFile.RequireRegular(path);
                // Compared by division: sh.Tokens × bytes per token overflows for a hostile count (2^62 + n tokens × 4 = 4n).
                long actual = new FileInfo(path).Length;
                if (actual % _bytesPerToken != 0 || actual / _bytesPerToken != sh.Tokens)
                    throw new InvalidFileException(path, $"shard is {actual} bytes but meta.json says {sh.Tokens} {meta.DType} tokens" +
                        $"{(sh.Tokens <= long.MaxValue / _bytesPerToken ? $" ({sh.Tokens * _bytesPerToken} bytes)" : "")}" +
                        $"{(actual / _bytesPerToken < sh.Tokens ? ": truncated" : "")}");
                if (sh.Tokens == 0) continue;
                var mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
                var view = mmf.CreateViewAccessor(0, actual, MemoryMappedFileAccess.Read);
                byte* p = null;
                view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
                _shards.Add((mmf, view, (nint)(p + view.PointerOffset), start, sh.Tokens, path));
                start = checked(start + sh.Tokens);
            }
        }
        catch (OverflowException) { Dispose(); throw new InvalidFileException(metaPath, "shard token counts overflow a 64-bit total"); }
        catch { Dispose(); throw; }
        if (start != split.Tokens)
        {
            Dispose();
            throw new InvalidFileException(metaPath, $"shard token counts sum to {start}, split says {split.Tokens}");
        }
        Length = start;
    }

    /// <summary>
    /// A dataset is untrusted input: a shard must be a file name directly inside its directory (as `whittle tokenize`
    /// writes them; no directory part, so no '..', no absolute path, no symlinked folder on the way) and, when the shard
    /// itself is a symbolic link, one whose final target is inside the directory too.
    /// </summary>
    static string ShardPath(string dir, string file, string metaPath)
    {
        string shown = JsonField.Truncate(file);
        if (file.Length == 0 || file is "." or ".." || file.Contains('\0') || file.IndexOfAny(['/', '\\']) >= 0)
            throw new InvalidFileException(
                metaPath, $"shard file \"{shown}\" must be a file name inside the dataset directory (no directory part, no '..', no " +
                $"absolute path)");
        string root = Path.GetFullPath(dir);
        string full = Path.Combine(root, file);
        var info = new FileInfo(full);
        if (info.Exists && info.LinkTarget is not null)
        {
            string target = info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
            string realRoot = new DirectoryInfo(root).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? root;
            bool inside = new[] { root, realRoot }.Any(r => Path.GetDirectoryName(target) == r.TrimEnd(Path.DirectorySeparatorChar));
            if (!inside)
                throw new InvalidFileException(
                metaPath, $"shard file \"{shown}\" is a symbolic link to {JsonField.Truncate(target)}, outside the dataset directory");
        }
        return full;
    }

    public long Length { get; }

    /// <summary>Copies tokens [start, start + dest.Length) into dest.</summary>
    public void Read(long start, Span<int> dest)
    {
        if (start < 0 || start + dest.Length > Length)
            throw new ArgumentOutOfRangeException(
            nameof(start), $"range [{start}, {start + dest.Length}) outside a stream of {Length} tokens");
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
            // Every id is checked as it leaves the file: an id outside the vocabulary would index past the embedding.
            // The bound is meta.json's vocab_size, which every consumer has checked against its model's.
            int bad = d.IndexOfAnyExceptInRange(0, _vocabSize - 1);
            if (bad >= 0)
                throw new InvalidFileException(
                    sh.Path, $"token {off + bad} (0-based) is {(uint)d[bad]}, outside the dataset's vocabulary [0, {_vocabSize}) " +
                    $"(vocab_size in meta.json)");
            done += n;
        }
    }

    public void Dispose()
    {
        foreach (var sh in _shards) { sh.View.SafeMemoryMappedViewHandle.ReleasePointer(); sh.View.Dispose(); sh.File.Dispose(); }
        _shards.Clear();
    }
}
