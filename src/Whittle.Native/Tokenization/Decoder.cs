// Policy: Hugging Face's decoders, each a step over the list of token strings (decode_chain), exactly as the Rust
// crate defines them: ByteLevel (chars back to bytes, read as UTF-8 with U+FFFD for invalid sequences), Metaspace,
// Replace with a literal pattern, ByteFallback (<0xNN> runs as UTF-8, one U+FFFD per byte when invalid), Fuse, Strip
// and Sequence. Without a decoder Hugging Face joins the tokens with spaces.
using System.Text;

namespace Whittle.Native.Tokenization;

internal abstract class DecoderStep
{
    public abstract List<string> Decode(List<string> tokens);

    /// <summary>The decoded text: the chain's strings concatenated.</summary>
    public string DecodeToString(List<string> tokens) => string.Concat(Decode(tokens));
}

internal sealed class ByteLevelDecoder : DecoderStep
{
    /// <summary>The bytes a token stands for: its chars through the byte table, or its UTF-8 when a char is not in it.</summary>
    public static byte[] TokenBytes(string token) => ByteLevel.Decode(token) ?? Encoding.UTF8.GetBytes(token);

    public override List<string> Decode(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens) bytes.AddRange(TokenBytes(t));
        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

internal sealed class ReplaceDecoder(string pattern, string content) : DecoderStep
{
    public override List<string> Decode(List<string> tokens) =>
        tokens.Select(t => t.Replace(pattern, content, StringComparison.Ordinal)).ToList();
}

internal sealed class ByteFallbackDecoder : DecoderStep
{
    static readonly UTF8Encoding Strict = new(false, true);

    public override List<string> Decode(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var run = new List<byte>();
        void Flush()
        {
            if (run.Count == 0) return;
            try { result.Add(Strict.GetString(run.ToArray())); }
            catch (DecoderFallbackException) { for (int i = 0; i < run.Count; i++) result.Add("\uFFFD"); }
            run.Clear();
        }
        foreach (var t in tokens)
        {
            if (ByteToken(t) is byte b) { run.Add(b); continue; }
            Flush();
            result.Add(t);
        }
        Flush();
        return result;
    }

    /// <summary>The byte of a "&lt;0xNN&gt;" token, read as Rust's u8::from_str_radix(NN, 16) reads it: hex digits of
    /// either case, or a '+' and one digit.</summary>
    public static byte? ByteToken(string t)
    {
        if (t.Length != 6 || !t.StartsWith("<0x", StringComparison.Ordinal) || t[5] != '>') return null;
        var digits = t[3] == '+' ? t.AsSpan(4, 1) : t.AsSpan(3, 2);
        return byte.TryParse(digits, System.Globalization.NumberStyles.AllowHexSpecifier, null, out byte b) ? b : null;
    }
}

internal sealed class FuseDecoder : DecoderStep
{
    public override List<string> Decode(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>`Strip`: removes up to `start` leading and `stop` trailing copies of one character from each token.</summary>
internal sealed class StripDecoder(Rune content, int start, int stop) : DecoderStep
{
    public override List<string> Decode(List<string> tokens) => tokens.Select(Strip).ToList();

    string Strip(string token)
    {
        var runes = token.EnumerateRunes().ToArray();
        int from = 0, to = runes.Length;
        while (from < Math.Min(start, runes.Length) && runes[from] == content) from++;
        for (int i = 0; i < stop && to > from && runes[to - 1] == content; i++) to--;
        var sb = new StringBuilder();
        for (int i = from; i < to; i++) sb.Append(runes[i].ToString());
        return sb.ToString();
    }
}

/// <summary>`Metaspace`: the replacement character back to a space, dropped from the first token when it was prepended.</summary>
internal sealed class MetaspaceDecoder(char replacement, PrependScheme scheme) : DecoderStep
{
    public override List<string> Decode(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            bool drop = i == 0 && scheme != PrependScheme.Never;
            result.Add(drop ? tokens[i].Replace(replacement.ToString(), "", StringComparison.Ordinal)
                : tokens[i].Replace(replacement, ' '));
        }
        return result;
    }
}

internal sealed class SequenceDecoder(DecoderStep[] steps) : DecoderStep
{
    public override List<string> Decode(List<string> tokens)
    {
        foreach (var s in steps) tokens = s.Decode(tokens);
        return tokens;
    }
}

/// <summary>No decoder: Hugging Face joins the tokens with single spaces.</summary>
internal sealed class JoinWithSpacesDecoder : DecoderStep
{
    public override List<string> Decode(List<string> tokens) => [string.Join(' ', tokens)];
}
