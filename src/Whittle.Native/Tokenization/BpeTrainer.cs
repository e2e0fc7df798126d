// Policy: byte-level BPE training, deterministic: the same inputs and options give the same tokenizer.json bytes.
// Words come from the GPT-2 split (special tokens are cut out of the text first); each step merges the most frequent
// adjacent pair, ties broken by the smaller (left bytes, right bytes) in ordinal order. Pair counts are updated
// incrementally, touching only the words that contain the merged pair.
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Whittle.Native.Tokenization;

public sealed class BpeTrainer
{
    readonly Dictionary<string, long> _wordCounts = new(StringComparer.Ordinal);
    readonly string[] _specials;
    readonly List<(int, int)> _pieces = new();

    /// <param name="specialTokens">Added as special tokens with ids 0, 1, ...; their occurrences in the text are not learned from.</param>
    public BpeTrainer(IReadOnlyList<string> specialTokens)
    {
        _specials = specialTokens.Distinct().ToArray();
        if (_specials.Any(string.IsNullOrEmpty)) throw new WhittleException("--special: a special token cannot be empty");
    }

    /// <summary>Counts the words of a text file (gzip allowed), read in pieces cut only where no word can span the cut.</summary>
    public void AddFile(string path, bool replaceInvalid = false)
    {
        using var reader = new IO.TextLineReader(path, replaceInvalid);
        var sb = new StringBuilder();
        while (reader.ReadLine(out _) is { } line)
        {
            if (sb.Length >= 1 << 20 && sb[^1] == '\n' && line.Length > 0 && !char.IsWhiteSpace(line[0]))
            {
                AddText(sb.ToString());
                sb.Clear();
            }
            sb.Append(line);
        }
        if (sb.Length > 0) AddText(sb.ToString());
    }

    /// <summary>Counts the words of one piece of training text.</summary>
    public void AddText(string text)
    {
        int pos = 0;
        while (pos < text.Length)
        {
            int next = text.Length, len = 0;
            foreach (var sp in _specials)
            {
                int at = text.IndexOf(sp, pos, StringComparison.Ordinal);
                if (at >= 0 && (at < next || (at == next && sp.Length > len))) { next = at; len = sp.Length; }
            }
            _pieces.Clear();
            Gpt2Splitter.Split(text, pos, next, _pieces);
            foreach (var (s, l) in _pieces)
            {
                var lookup = _wordCounts.GetAlternateLookup<ReadOnlySpan<char>>();
                var span = text.AsSpan(s, l);
                lookup[span] = lookup.TryGetValue(span, out long c) ? c + 1 : 1;
            }
            pos = next + len;
        }
    }

    /// <summary>Learns merges until the vocabulary (specials + 256 bytes + merges) reaches vocabSize, and returns tokenizer.json
    /// bytes.</summary>
    public byte[] Train(int vocabSize)
    {
        int minimum = _specials.Length + 256;
        if (vocabSize < minimum)
            throw new WhittleException($"--vocab-size {vocabSize} is too small: the bytes and special tokens alone need {minimum}");
        if (_wordCounts.Count == 0) throw new WhittleException("no training text: the inputs are empty");

        // Token t (internal numbering: 0..255 are bytes, then merges in order) and its bytes.
        var tokenBytes = new List<byte[]>();
        for (int b = 0; b < 256; b++) tokenBytes.Add([(byte)b]);
        var byBytes = new Dictionary<string, int>(StringComparer.Ordinal);   // byte-level string → token
        for (int b = 0; b < 256; b++) byBytes[ByteLevel.ByteToChar[b].ToString()] = b;

        // Words sorted so everything downstream is independent of hash order.
        var words = _wordCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToArray();
        var symbols = new List<int>[words.Length];
        var counts = new long[words.Length];
        var pairCount = new Dictionary<long, long>();
        var pairWords = new Dictionary<long, HashSet<int>>();
        for (int w = 0; w < words.Length; w++)
        {
            counts[w] = words[w].Value;
            symbols[w] = Encoding.UTF8.GetBytes(words[w].Key).Select(b => (int)b).ToList();
            AddPairs(w, +1);
        }

        var merges = new List<(int Left, int Right)>();
        int vocab = minimum;
        while (vocab < vocabSize && pairCount.Count > 0)
        {
            long best = 0, bestCount = 0;
            foreach (var (pair, c) in pairCount)
                if (c > bestCount || (c == bestCount && ComparePairs(pair, best) < 0)) { best = pair; bestCount = c; }
            if (bestCount <= 0) break;
            int left = (int)(best >> 32), right = (int)best;
            var merged = tokenBytes[left].Concat(tokenBytes[right]).ToArray();
            int newToken = tokenBytes.Count;
            tokenBytes.Add(merged);
            string key = ByteLevel.Encode(merged);
            if (byBytes.TryAdd(key, newToken)) vocab++;
            merges.Add((left, right));

            foreach (int w in pairWords[best].ToArray())
            {
                var sym = symbols[w];
                if (!Contains(sym, left, right)) continue;
                AddPairs(w, -1);
                var next = new List<int>(sym.Count);
                for (int i = 0; i < sym.Count; i++)
                {
                    if (i + 1 < sym.Count && sym[i] == left && sym[i + 1] == right) { next.Add(newToken); i++; }
                    else next.Add(sym[i]);
                }
                symbols[w] = next;
                AddPairs(w, +1);
            }
            pairWords.Remove(best);
            pairCount.Remove(best);
        }
        return Write(tokenBytes, byBytes, merges);

        void AddPairs(int w, int sign)
        {
            var sym = symbols[w];
            for (int i = 0; i + 1 < sym.Count; i++)
            {
                long p = ((long)sym[i] << 32) | (uint)sym[i + 1];
                long c = (pairCount.TryGetValue(p, out long old) ? old : 0) + sign * counts[w];
                if (c == 0) pairCount.Remove(p); else pairCount[p] = c;
                if (sign > 0)
                {
                    if (!pairWords.TryGetValue(p, out var set)) pairWords[p] = set = new HashSet<int>();
                    set.Add(w);
                }
            }
        }

        int ComparePairs(long a, long b)
        {
            int c = CompareBytes(tokenBytes[(int)(a >> 32)], tokenBytes[(int)(b >> 32)]);
            return c != 0 ? c : CompareBytes(tokenBytes[(int)a], tokenBytes[(int)b]);
        }
    }

    static int CompareBytes(byte[] a, byte[] b) => a.AsSpan().SequenceCompareTo(b);

    static bool Contains(List<int> sym, int left, int right)
    {
        for (int i = 0; i + 1 < sym.Count; i++) if (sym[i] == left && sym[i + 1] == right) return true;
        return false;
    }

    byte[] Write(List<byte[]> tokenBytes, Dictionary<string, int> byBytes, List<(int Left, int Right)> merges)
    {
        // Final ids: specials 0..k-1, then the 256 bytes, then merged tokens in the order they were learned.
        int k = _specials.Length;
        var finalId = new Dictionary<string, int>(StringComparer.Ordinal);
        var ordered = new List<string>();
        foreach (var (str, t) in byBytes.OrderBy(kv => kv.Value))
        {
            finalId[str] = k + ordered.Count;
            ordered.Add(str);
        }
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(
            ms, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            for (int i = 0; i < k; i++)
            {
                w.WriteStartObject();
                w.WriteNumber("id", i);
                w.WriteString("content", _specials[i]);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNull("normalizer");
            WriteByteLevel(w, "pre_tokenizer", trimOffsets: true);
            WriteByteLevel(w, "post_processor", trimOffsets: false);
            WriteByteLevel(w, "decoder", trimOffsets: true);
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            w.WriteNull("unk_token");
            w.WriteNull("continuing_subword_prefix");
            w.WriteNull("end_of_word_suffix");
            w.WriteBoolean("fuse_unk", false);
            w.WriteBoolean("byte_fallback", false);
            w.WriteStartObject("vocab");
            for (int i = 0; i < k; i++) w.WriteNumber(_specials[i], i);
            foreach (var str in ordered) w.WriteNumber(str, finalId[str]);
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var (l, r) in merges)
                w.WriteStringValue(ByteLevel.Encode(tokenBytes[l]) + " " + ByteLevel.Encode(tokenBytes[r]));
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }

    static void WriteByteLevel(Utf8JsonWriter w, string name, bool trimOffsets)
    {
        w.WriteStartObject(name);
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", trimOffsets);
        w.WriteBoolean("use_regex", true);
        w.WriteEndObject();
    }
}
