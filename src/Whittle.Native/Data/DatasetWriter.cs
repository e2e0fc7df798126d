// Policy: text files → token shards + meta.json. Documents (a whole file, a JSONL line's "text", or the lines from one
// --doc-start match to the next) are each encoded as Hugging Face encodes them with special tokens (the tokenizer's
// template around them: BOS first for Llama and Mistral, nothing for GPT-2 and Qwen2), followed by EOS unless the
// template already ends with it, and go whole to train or val, chosen by a hash of (seed, document index) so the split
// is deterministic and needs no second pass. Text streams through in bounded batches encoded in parallel, a long
// document cut only where the tokenizer says the ids stay the same (Tokenizer.SafeCuts); output goes to a temporary
// sibling directory renamed into place only on success.
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using Whittle.Native.Tokenization;

using Whittle.Native.IO;

namespace Whittle.Native.Data;

public sealed record TokenizeOptions(IReadOnlyList<string> Inputs, string OutDir, double ValFraction = 0.0, ulong Seed = 0,
    string? DocStart = null, bool ReplaceInvalid = false, long ShardTokens = 1L << 28);

public static class DatasetWriter
{
    /// <summary>The copy of the tokenizer kept inside every dataset directory.</summary>
    public const string TokenizerCopyName = "tokenizer.json";

    const int ChunkChars = 1 << 20;          // a long document is encoded in pieces of about this size
    const int BatchChars = 8 << 20;          // text held at once: bounds memory

    /// <summary>Longest one --doc-start test of a line (at most TextLineReader.MaxLineBytes) may take.</summary>
    public static readonly TimeSpan DocStartTimeout = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The --doc-start pattern in linear time where .NET's non-backtracking engine accepts it (IsMatch means the same in
    /// both engines); patterns it cannot run (backreferences, lookarounds, atomic groups) backtrack under a per-line
    /// timeout, a timeout being an error naming the line (see Write).
    /// </summary>
    internal static Regex DocStartRegex(string pattern)
    {
        try { return new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.NonBacktracking); }
        catch (NotSupportedException) { }
        catch (ArgumentException) { }   // invalid, or unsupported by this engine: the backtracking one says which
        try { return new Regex(pattern, RegexOptions.CultureInvariant, DocStartTimeout); }
        catch (ArgumentException e)
        {
            throw new WhittleException($"--doc-start: invalid regular expression ({ErrorText.Clip(e.Message)})");
        }
    }

    /// <summary>Longest piece of one document held in memory when it has no line break to cut at (see Write).</summary>
    public const int MaxUncutChars = 16 * ChunkChars;

    static bool DocStarts(Regex docStart, string line, string input, long lineNo)
    {
        try { return docStart.IsMatch(line.TrimEnd('\n', '\r')); }
        catch (RegexMatchTimeoutException)
        {
            throw new WhittleException($"--doc-start: the pattern took longer than {DocStartTimeout.TotalSeconds:0} s on line {lineNo} " +
                $"of {ErrorText.Clip(input)} (catastrophic backtracking?); simplify it");
        }
    }

    /// <summary>Index of a ' ' between two non-space characters in <paramref name="piece"/> (the last one), or -1.</summary>
    static int WordCut(string piece)
    {
        for (int i = piece.Length - 2; i > 0; i--)
            if (piece[i] == ' ' && !char.IsWhiteSpace(piece[i - 1]) && !char.IsWhiteSpace(piece[i + 1])) return i;
        return -1;
    }

    /// <param name="progress">Called with (input bytes read, total input bytes), as read from disk (compressed for .gz).</param>
    public static DatasetMeta Write(Tokenizer tokenizer, TokenizeOptions o, Action<long, long>? progress = null)
    {
        if (o.Inputs.Count == 0) throw new WhittleException("--input: at least one input file is required");
        if (o.ValFraction is < 0 or >= 1 || double.IsNaN(o.ValFraction))
            throw new WhittleException($"--val-fraction {o.ValFraction} must be in [0, 1)");
        int eos = tokenizer.EosId
            ?? throw new WhittleException($"{tokenizer.Path}: tokenizer has no end-of-text token (<|endoftext|>) to separate documents");
        foreach (var input in o.Inputs) if (!File.Exists(input)) throw new WhittleException($"{input}: input file not found");
        var outDir = Path.GetFullPath(o.OutDir);
        if (File.Exists(outDir))
            throw new WhittleException($"{ErrorText.Clip(o.OutDir)}: is a file; --out must be a new or empty directory");
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any())
            throw new WhittleException($"{o.OutDir}: output directory exists and is not empty");
        var docStart = o.DocStart is null ? null : DocStartRegex(o.DocStart);

        bool wide = tokenizer.VocabSize > 65536;
        var tmp = outDir.TrimEnd(Path.DirectorySeparatorChar) + $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}"[..24];
        Directory.CreateDirectory(tmp);
        try
        {
            var train = new ShardWriter(tmp, "train", wide, o.ShardTokens);
            var val = new ShardWriter(tmp, "val", wide, o.ShardTokens);
            long totalBytes = o.Inputs.Sum(p => new FileInfo(p).Length), doneBytes = 0;
            long docIndex = -1;
            var batch = new List<(long Doc, string Text, bool First, bool Last)>();
            long batchChars = 0;
            int[] prefix = [.. tokenizer.SpecialPrefix], suffix = [.. tokenizer.SpecialSuffix];
            if (suffix.Length == 0 || suffix[^1] != eos) suffix = [.. suffix, eos];
            var (cutLines, cutWords) = tokenizer.SafeCuts;

            void Flush()
            {
                var ids = tokenizer.EncodeBatch(batch.Select(b => b.Text).ToArray());
                for (int i = 0; i < batch.Count; i++)
                {
                    var w = IsVal(o.Seed, batch[i].Doc, o.ValFraction) ? val : train;
                    if (batch[i].First) w.Append(prefix);
                    w.Append(ids[i]);
                    if (batch[i].Last) w.EndDocument(suffix);
                }
                batch.Clear();
                batchChars = 0;
            }
            void Emit(string text, bool first, bool last)
            {
                batch.Add((docIndex, text, first, last));
                batchChars += text.Length;
                if (batchChars >= BatchChars) Flush();
            }

            foreach (var input in o.Inputs)
            {
                bool jsonl = input.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)
                    || input.EndsWith(".jsonl.gz", StringComparison.OrdinalIgnoreCase);
                using var reader = new TextLineReader(input, o.ReplaceInvalid);
                var doc = new System.Text.StringBuilder();
                bool docOpen = false;
                long lineNo = 0;
                bool docHasChunks = false;   // an earlier piece of the open document was emitted
                void CloseDoc()
                {
                    // An empty document is dropped: no EOS for nothing.
                    if (docOpen && (doc.Length > 0 || docHasChunks)) Emit(doc.ToString(), !docHasChunks, true);
                    doc.Clear();
                    docOpen = false;
                    docHasChunks = false;
                }
                void OpenDoc() { docIndex++; docOpen = true; }
                while (reader.ReadLine(out bool continuation) is { } line)
                {
                    if (!continuation) lineNo++;
                    if (jsonl)
                    {
                        if (continuation)
                            throw new InvalidFileException(input, $"line {lineNo} is longer than {TextLineReader.MaxLineBytes} bytes");
                        if (string.IsNullOrWhiteSpace(line)) continue;
                        var text = JsonlText(input, lineNo, line);
                        if (text.Length == 0) continue;
                        OpenDoc();
                        Emit(text, true, true);
                        docOpen = false;
                    }
                    else
                    {
                        if (!docOpen) OpenDoc();
                        else if (!continuation && docStart is not null && doc.Length > 0 && DocStarts(docStart, line, input, lineNo))
                        {
                            CloseDoc();
                            OpenDoc();
                        }
                        // Cut a long document right after a newline followed by a non-space where no piece spans that point.
                        if (cutLines && doc.Length >= ChunkChars && !continuation && line.Length > 0 && !char.IsWhiteSpace(line[0])
                            && doc[^1] == '\n')
                        {
                            Emit(doc.ToString(), !docHasChunks, false);
                            doc.Clear();
                            docHasChunks = true;
                        }
                        // Without such a line break (a line longer than TextLineReader.MaxLineBytes arrives in pieces; every
                        // line may be indented) cut past ChunkChars before a single space between two words: the
                        // pre-tokenizer splits there anyway, so the tokens are the same. Text with no such place either
                        // (binary data, a device like /dev/zero) is refused once MaxUncutChars are held, instead of
                        // growing without end.
                        if (cutWords && doc.Length >= ChunkChars && WordCut(line) is var cut and > 0)
                        {
                            doc.Append(line, 0, cut);
                            Emit(doc.ToString(), !docHasChunks, false);
                            doc.Clear();
                            docHasChunks = true;
                            doc.Append(line, cut, line.Length - cut);
                        }
                        else doc.Append(line);
                        if (doc.Length > MaxUncutChars)
                            throw new InvalidFileException(input, cutLines || cutWords
                                ? $"line {lineNo}: more than {MaxUncutChars:N0} characters with no line break or space between " +
                                  $"words to cut a document at; is it a text file?"
                                : $"line {lineNo}: a document longer than {MaxUncutChars:N0} characters; " +
                                  $"{Path.GetFileName(tokenizer.Path)} encodes a document as a whole (a cut would change its ids), " +
                                  $"so split it with --doc-start or into JSONL lines");
                    }
                    if (progress is not null && (lineNo & 1023) == 0) progress(doneBytes + reader.FilePosition, totalBytes);
                }
                CloseDoc();
                doneBytes += new FileInfo(input).Length;
                progress?.Invoke(doneBytes, totalBytes);
            }
            Flush();
            if (train.Tokens + val.Tokens == 0)
                throw new WhittleException($"no text in the inputs ({string.Join(", ", o.Inputs)}): nothing to tokenize");
            var trainInfo = train.Finish();
            var valInfo = val.Finish();
            var meta = new DatasetMeta(
                DatasetMeta.CurrentVersion, tokenizer.Sha256, Path.GetFileName(tokenizer.Path), tokenizer.VocabSize, eos,
                wide ? "uint32" : "uint16", o.ValFraction, o.Seed, o.DocStart, trainInfo, valInfo, prefix, suffix);
            // The dataset carries its tokenizer, so models trained on it can carry it on (and hashes can be checked) wherever it moves.
            File.Copy(tokenizer.Path, Path.Combine(tmp, TokenizerCopyName));
            using (var fs = File.Create(Path.Combine(tmp, "meta.json")))
            using (var w = new Utf8JsonWriter(
                fs, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                meta.WriteTo(w);
            progress?.Invoke(totalBytes, totalBytes);
            if (Directory.Exists(outDir)) Directory.Delete(outDir);
            Directory.Move(tmp, outDir);
            return meta;
        }
        catch
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Whether document doc goes to val: a hash of (seed, doc) compared with the fraction.</summary>
    public static bool IsVal(ulong seed, long doc, double fraction)
    {
        if (fraction <= 0) return false;
        ulong z = seed * 0x9E3779B97F4A7C15UL + (ulong)doc + 0xD1B54A32D192ED03UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53)) < fraction;
    }

    static string JsonlText(string path, long lineNo, string line)
    {
        try
        {
            using var d = JsonDocument.Parse(line);
            if (d.RootElement.ValueKind == JsonValueKind.Object && d.RootElement.TryGetProperty("text", out var t)
                && t.ValueKind == JsonValueKind.String)
                return t.GetString()!;
        }
        catch (JsonException e) { throw new InvalidFileException(path, $"line {lineNo}: not valid JSON ({e.Message})"); }
        throw new InvalidFileException(path, $"line {lineNo}: expected an object with a string \"text\"");
    }

    /// <summary>Appends tokens of one split to numbered shard files.</summary>
    sealed class ShardWriter(string dir, string split, bool wide, long shardTokens)
    {
        readonly List<ShardInfo> _shards = new();
        FileStream? _file;
        long _inShard;
        byte[] _buf = new byte[1 << 16];
        public long Tokens { get; private set; }
        public long Documents { get; private set; }

        public void Append(int[] ids)
        {
            int size = wide ? 4 : 2;
            int i = 0;
            while (i < ids.Length)
            {
                if (_file is null || _inShard == shardTokens) NextShard();
                int n = (int)Math.Min(Math.Min(ids.Length - i, shardTokens - _inShard), _buf.Length / size);
                for (int k = 0; k < n; k++)
                {
                    if (wide) BitConverter.TryWriteBytes(_buf.AsSpan(k * 4), ids[i + k]);
                    else BitConverter.TryWriteBytes(_buf.AsSpan(k * 2), (ushort)ids[i + k]);
                }
                _file!.Write(_buf, 0, n * size);
                i += n; _inShard += n; Tokens += n;
            }
        }

        /// <summary>Ends a document with its closing ids (the template's suffix, then EOS).</summary>
        public void EndDocument(int[] closing) { Append(closing); Documents++; }

        void NextShard()
        {
            CloseShard();
            var name = $"{split}-{_shards.Count:D4}.bin";
            _file = new FileStream(Path.Combine(dir, name), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
            _shards.Add(new ShardInfo(name, 0));
            _inShard = 0;
        }

        void CloseShard()
        {
            if (_file is null) return;
            _file.Dispose();
            _file = null;
            _shards[^1] = _shards[^1] with { Tokens = _inShard };
        }

        public SplitInfo Finish()
        {
            CloseShard();
            return new SplitInfo(Documents, Tokens, _shards.ToArray());
        }
    }
}
