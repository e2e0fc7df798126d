// Policy: the GPT-2 byte-to-printable-character table, defined once. Every byte maps to one visible char so a BPE
// vocabulary can be stored as JSON strings; the table is fixed by GPT-2 and must never change.
namespace Whittle.Native.Tokenization;

internal static class ByteLevel
{
    /// <summary>(256,) byte → the char that stands for it in vocabulary strings.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>char → byte, or -1 for a char that is not a byte-level char. Indexed by char code (≤ 0x143).</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    static char[] BuildByteToChar()
    {
        // Printable Latin-1 bytes stand for themselves; the rest (controls, space, soft hyphen...) are shifted to 256+.
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    static short[] BuildCharToByte()
    {
        var table = new short[0x144];
        Array.Fill(table, (short)-1);
        for (int b = 0; b < 256; b++) table[ByteToChar[b]] = (short)b;
        return table;
    }

    /// <summary>The byte-level string of raw bytes (what a vocabulary key looks like).</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++) dst[i] = ByteToChar[src[i]];
        });
    }

    /// <summary>Bytes of a byte-level string, or null when it holds a char outside the table.</summary>
    public static byte[]? Decode(string s)
    {
        var bytes = new byte[s.Length];
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c >= CharToByte.Length || CharToByte[c] < 0) return null;
            bytes[i] = (byte)CharToByte[c];
        }
        return bytes;
    }
}
