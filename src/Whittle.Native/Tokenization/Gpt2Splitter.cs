// Policy: a hand-written scanner equivalent to the GPT-2 split regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// working on code points (so astral letters count as letters, as in the Rust/Oniguruma engine Hugging Face uses)
// and about an order of magnitude faster than a backtracking Regex. Alternatives are tried in the regex's order.
using System.Globalization;
using System.Text;

namespace Whittle.Native.Tokenization;

internal static class Gpt2Splitter
{
    /// <summary>The character classes the split regexes tell apart: \p{L}, \p{N}, \s (Unicode White_Space), the rest.</summary>
    internal enum Cls : byte { Letter, Number, Space, Other }

    /// <summary>The class of the code point at s[i]; width is its length in chars (2 for a surrogate pair).</summary>
    internal static Cls Classify(string s, int i, out int width)
    {
        char c = s[i];
        if (c < 0x80)
        {
            width = 1;
            if ((uint)((c | 0x20) - 'a') <= 'z' - 'a') return Cls.Letter;
            if ((uint)(c - '0') <= 9) return Cls.Number;
            if (c == ' ' || (c >= '\t' && c <= '\r')) return Cls.Space;
            return Cls.Other;
        }
        Rune r;
        if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            r = new Rune(c, s[i + 1]);
            width = 2;
        }
        else { width = 1; if (char.IsSurrogate(c)) return Cls.Other; r = new Rune(c); }
        if (Rune.IsWhiteSpace(r)) return Cls.Space;
        switch (Rune.GetUnicodeCategory(r))
        {
            case UnicodeCategory.UppercaseLetter: case UnicodeCategory.LowercaseLetter:
            case UnicodeCategory.TitlecaseLetter: case UnicodeCategory.ModifierLetter: case UnicodeCategory.OtherLetter:
                return Cls.Letter;
            case UnicodeCategory.DecimalDigitNumber: case UnicodeCategory.LetterNumber: case UnicodeCategory.OtherNumber:
                return Cls.Number;
            default: return Cls.Other;
        }
    }

    /// <summary>Appends (start, length) of each piece of s[start..end) to pieces.</summary>
    public static void Split(string s, int start, int end, List<(int Start, int Length)> pieces)
    {
        int i = start;
        while (i < end)
        {
            int len = Contraction(s, i, end);
            if (len == 0) len = Run(s, i, end);
            pieces.Add((i, len));
            i += len;
        }
    }

    static int Contraction(string s, int i, int end)
    {
        if (s[i] != '\'' || i + 1 >= end) return 0;
        char a = s[i + 1];
        if (a is 's' or 't' or 'm' or 'd') return 2;
        if (i + 2 >= end) return 0;
        char b = s[i + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
        return 0;
    }

    static int Run(string s, int i, int end)
    {
        int p = i;
        var cls = Classify(s, p, out int w);
        if (cls == Cls.Space)
        {
            // ` ?X+`: a single U+0020 may lead a run of letters, numbers or other symbols.
            if (s[p] == ' ' && p + 1 < end)
            {
                var next = Classify(s, p + 1, out int w2);
                if (next != Cls.Space) return 1 + SameClassRun(s, p + 1, end, next, w2);
            }
            // `\s+(?!\S)` then `\s+`: a whitespace run gives back its last char when a non-space follows it.
            int q = p + w;
            int lastWidth = w;
            while (q < end)
            {
                var c = Classify(s, q, out int wq);
                if (c != Cls.Space) break;
                lastWidth = wq;
                q += wq;
            }
            int run = q - p;
            if (q < end && run > lastWidth) return run - lastWidth;
            return run;
        }
        return SameClassRun(s, p, end, cls, w);
    }

    static int SameClassRun(string s, int p, int end, Cls cls, int firstWidth)
    {
        int q = p + firstWidth;
        while (q < end)
        {
            if (Classify(s, q, out int w) != cls) break;
            q += w;
        }
        return q - p;
    }
}
