// Policy: added tokens are found before the model sees the text, as Hugging Face's AddedVocabulary finds them: tokens
// with normalized=false in the raw text, then tokens with normalized=true in each normalized segment (matched by
// their normalized content), each time leftmost-longest and without overlaps. single_word discards a match next to a
// word character (Rust's \w) but still consumes it; lstrip / rstrip swallow the whitespace beside a match. Matching
// walks a trie from each candidate position, so it costs at most MaxContentChars steps per character of text.
using System.Buffers;
using System.Globalization;
using System.Text;

namespace Whittle.Native.Tokenization;

/// <summary>A token the tokenizer matches in text before anything else (e.g. &lt;|endoftext|&gt;).</summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord = false, bool LStrip = false,
    bool RStrip = false, bool Normalized = false);

internal sealed class AddedVocabulary
{
    /// <summary>Longest added token accepted: bounds the matching work per character of text.</summary>
    public const int MaxContentChars = 256;

    readonly Matcher _raw;
    readonly Matcher _normalized;

    public AddedVocabulary(IReadOnlyList<AddedToken> tokens, INormalizer? normalizer)
    {
        // Hugging Face lists special tokens before the others; the first of two equal patterns wins.
        var ordered = tokens.Where(t => t.Special).Concat(tokens.Where(t => !t.Special)).ToArray();
        _raw = new Matcher(ordered.Where(t => !t.Normalized).Select(t => (t, t.Content)));
        _normalized = new Matcher(ordered.Where(t => t.Normalized)
            .Select(t => (t, normalizer is null ? t.Content : normalizer.Normalize(t.Content))));
    }

    public bool HasNormalized => !_normalized.IsEmpty;

    /// <summary>Splits s[start..end) into text pieces (Id -1) and matched tokens, in order (normalized=false tokens).</summary>
    public void SplitRaw(string s, int start, int end, List<(int Start, int End, int Id)> output) =>
        _raw.Split(s, start, end, output);

    /// <summary>The same for normalized=true tokens, on a normalized segment.</summary>
    public void SplitNormalized(string s, int start, int end, List<(int Start, int End, int Id)> output) =>
        _normalized.Split(s, start, end, output);

    sealed class Matcher
    {
        // Trie over the patterns' chars; node 0 is the root. Terminal[n]: index into _tokens, or -1.
        readonly List<Dictionary<char, int>?> _children = [null];
        readonly List<int> _terminal = [-1];
        readonly List<AddedToken> _tokens = [];
        readonly SearchValues<char> _firstChars;

        public Matcher(IEnumerable<(AddedToken Token, string Pattern)> patterns)
        {
            var first = new HashSet<char>();
            foreach (var (token, pattern) in patterns)
            {
                if (pattern.Length == 0) continue;
                int node = 0;
                foreach (char c in pattern)
                {
                    var kids = _children[node] ??= [];
                    if (!kids.TryGetValue(c, out int next))
                    {
                        next = _children.Count;
                        kids[c] = next;
                        _children.Add(null);
                        _terminal.Add(-1);
                    }
                    node = next;
                }
                if (_terminal[node] < 0) { _terminal[node] = _tokens.Count; _tokens.Add(token); }
                first.Add(pattern[0]);
            }
            _firstChars = SearchValues.Create([.. first]);
        }

        public bool IsEmpty => _tokens.Count == 0;

        public void Split(string s, int start, int end, List<(int Start, int End, int Id)> output)
        {
            int emitted = start, p = start;
            while (!IsEmpty && p < end)
            {
                int at = s.AsSpan(p, end - p).IndexOfAny(_firstChars);
                if (at < 0) break;
                at += p;
                var (token, matchEnd) = Longest(s, at, end);
                if (token is null) { p = at + 1; continue; }
                p = matchEnd;
                if (token.SingleWord && ((at > start && IsWordBefore(s, at, start)) || (matchEnd < end && IsWordAt(s, matchEnd, end))))
                    continue;
                int ms = at, me = matchEnd;
                if (token.LStrip) ms = Math.Max(emitted, WhitespaceStartBefore(s, ms, start));
                if (token.RStrip) me = WhitespaceEndAfter(s, me, end);
                if (ms > emitted) output.Add((emitted, ms, -1));
                output.Add((ms, me, token.Id));
                emitted = me;
                p = me;
            }
            if (end > emitted) output.Add((emitted, end, -1));
        }

        (AddedToken? Token, int End) Longest(string s, int at, int end)
        {
            AddedToken? best = null;
            int bestEnd = at, node = 0;
            for (int q = at; q < end; q++)
            {
                if (_children[node] is not { } kids || !kids.TryGetValue(s[q], out node)) break;
                if (_terminal[node] >= 0) { best = _tokens[_terminal[node]]; bestEnd = q + 1; }
            }
            return (best, bestEnd);
        }
    }

    static int WhitespaceStartBefore(string s, int p, int start)
    {
        while (p > start && RuneBefore(s, p, start, out int w) is { } r && Rune.IsWhiteSpace(r)) p -= w;
        return p;
    }

    static int WhitespaceEndAfter(string s, int p, int end)
    {
        while (p < end && Rune.DecodeFromUtf16(s.AsSpan(p, end - p), out var r, out int w) == OperationStatus.Done
               && Rune.IsWhiteSpace(r)) p += w;
        return p;
    }

    static Rune? RuneBefore(string s, int p, int start, out int width) =>
        Rune.DecodeLastFromUtf16(s.AsSpan(start, p - start), out var r, out width) == OperationStatus.Done ? r : null;

    static bool IsWordBefore(string s, int p, int start) => RuneBefore(s, p, start, out _) is { } r && IsWordChar(r);

    static bool IsWordAt(string s, int p, int end) =>
        Rune.DecodeFromUtf16(s.AsSpan(p, end - p), out var r, out _) == OperationStatus.Done && IsWordChar(r);

    /// <summary>
    /// Rust regex's Unicode \w: Alphabetic (letters, letter numbers, Other_Alphabetic), marks, decimal digits,
    /// connector punctuation and the two joiners. Other_Alphabetic outside the marks is the circled and squared
    /// Latin letters, listed here by range.
    /// </summary>
    internal static bool IsWordChar(Rune r)
    {
        int v = r.Value;
        if (v is 0x200C or 0x200D || v is >= 0x24B6 and <= 0x24E9 || v is >= 0x1F130 and <= 0x1F149
            || v is >= 0x1F150 and <= 0x1F169 || v is >= 0x1F170 and <= 0x1F189) return true;
        return Rune.GetUnicodeCategory(r) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.LetterNumber
                or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.ConnectorPunctuation => true,
            _ => false,
        };
    }
}
