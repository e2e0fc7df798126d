// Policy: Unicode Normalization Form C (UAX #15) — canonical decomposition, canonical ordering, canonical
// composition — from generated tables, so the result does not depend on ICU or the globalization mode.
using System.Text;

namespace Whittle.Native.Tokenization;

internal static class UnicodeNfc
{
    static readonly Dictionary<int, string> Decomp = Zip(UnicodeNfcData.DecompositionKeys, UnicodeNfcData.Decompositions);
    static readonly Dictionary<int, byte> Ccc = Zip(UnicodeNfcData.CombiningKeys, UnicodeNfcData.CombiningClasses);
    static readonly Dictionary<long, int> Compose = BuildCompose();

    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28;
    const int NCount = VCount * TCount, SCount = LCount * NCount;

    static Dictionary<int, T> Zip<T>(int[] keys, T[] values)
    {
        var d = new Dictionary<int, T>(keys.Length);
        for (int i = 0; i < keys.Length; i++) d[keys[i]] = values[i];
        return d;
    }

    static Dictionary<long, int> BuildCompose()
    {
        var d = new Dictionary<long, int>();
        for (int i = 0; i < UnicodeNfcData.CompositionFirst.Length; i++)
            d[((long)UnicodeNfcData.CompositionFirst[i] << 21) | (uint)UnicodeNfcData.CompositionSecond[i]] =
                UnicodeNfcData.CompositionResult[i];
        return d;
    }

    static int CombiningClass(int cp) => cp < 0x300 ? 0 : Ccc.TryGetValue(cp, out var c) ? c : 0;

    public static string Normalize(string s)
    {
        // Below U+0300 every character is already NFC and a starter.
        int i = 0;
        while (i < s.Length && s[i] < 0x300) i++;
        if (i == s.Length) return s;

        var cps = new List<int>(s.Length + 8);
        foreach (var r in s.EnumerateRunes()) Decompose(r.Value, cps);
        // Canonical ordering: stable-sort each run of non-starters by combining class.
        for (int a = 0; a < cps.Count; a++)
        {
            if (CombiningClass(cps[a]) == 0) continue;
            int b = a;
            while (b < cps.Count && CombiningClass(cps[b]) != 0) b++;
            if (b - a > 1)
            {
                var run = cps.GetRange(a,
                    b - a).Select((cp, k) => (cp, k)).OrderBy(x => CombiningClass(x.cp)).ThenBy(x => x.k).Select(x => x.cp).ToArray();
                for (int k = 0; k < run.Length; k++) cps[a + k] = run[k];
            }
            a = b;
        }
        // Canonical composition: each character joins the last starter unless a character in between blocks it.
        var output = new List<int>(cps.Count);
        int starter = -1, lastClass = -1;
        foreach (int cp in cps)
        {
            int cc = CombiningClass(cp);
            if (starter >= 0 && (lastClass < cc || (lastClass == 0 && output.Count - 1 == starter))
                && TryCompose(output[starter], cp, out int composed))
            {
                output[starter] = composed;
                continue;
            }
            if (cc == 0) { starter = output.Count; lastClass = 0; }
            else lastClass = cc;
            output.Add(cp);
        }
        var sb = new StringBuilder(output.Count);
        foreach (int cp in output) sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    static void Decompose(int cp, List<int> output)
    {
        if (cp >= SBase && cp < SBase + SCount)
        {
            int si = cp - SBase;
            output.Add(LBase + si / NCount);
            output.Add(VBase + si % NCount / TCount);
            if (si % TCount != 0) output.Add(TBase + si % TCount);
            return;
        }
        if (cp >= 0xC0 && Decomp.TryGetValue(cp, out var d)) { foreach (var r in d.EnumerateRunes()) output.Add(r.Value); return; }
        output.Add(cp);
    }

    static bool TryCompose(int a, int b, out int composed)
    {
        if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
        { composed = SBase + ((a - LBase) * VCount + (b - VBase)) * TCount; return true; }
        if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase && b < TBase + TCount)
        { composed = a + (b - TBase); return true; }
        return Compose.TryGetValue(((long)a << 21) | (uint)b, out composed);
    }
}
