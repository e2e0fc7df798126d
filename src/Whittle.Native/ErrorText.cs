using System.Text;

namespace Whittle.Native;

/// <summary>
/// Policy: every error message that echoes user input (a tensor name, a field value, an option, a regex, a path) goes
/// through <see cref="Clip"/>, so a hostile input (a 10 MB tensor name, a megabyte of JSON in one string) cannot turn
/// the one-line error into megabytes of output; the CLI passes the final message through <see cref="OneLine"/> as a
/// backstop for anything echoed without it. Clipped text keeps its head and says how long it was.
/// </summary>
public static class ErrorText
{
    /// <summary>Longest echo of one user-supplied value: enough for any real tensor name, field or path.</summary>
    public const int MaxEcho = 200;

    /// <summary>Longest whole error line the CLI prints.</summary>
    public const int MaxLine = 2000;

    /// <summary>The value, or its first <paramref name="max"/> characters and how long it was; control characters
    /// (newlines included) are escaped so the value cannot break the message into several lines.</summary>
    public static string Clip(string? value, int max = MaxEcho)
    {
        if (value is null) return "null";
        bool clipped = value.Length > max;
        var head = clipped ? value[..max] : value;
        var text = Escape(head);
        return clipped ? $"{text}…({value.Length:N0} characters)" : text;
    }

    /// <summary>The message on one line, at most <see cref="MaxLine"/> characters (head and tail kept, so both what was
    /// read and what was expected survive).</summary>
    public static string OneLine(string message)
    {
        var text = Escape(message);
        if (text.Length <= MaxLine) return text;
        int half = MaxLine / 2;
        return $"{text[..half]} …({text.Length - MaxLine:N0} characters left out)… {text[^half..]}";
    }

    static string Escape(string s)
    {
        int i = 0;
        while (i < s.Length && !char.IsControl(s[i])) i++;
        if (i == s.Length) return s;
        var sb = new StringBuilder(s.Length + 8).Append(s, 0, i);
        for (; i < s.Length; i++)
        {
            char c = s[i];
            sb.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when char.IsControl(c) => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }
        return sb.ToString();
    }
}
