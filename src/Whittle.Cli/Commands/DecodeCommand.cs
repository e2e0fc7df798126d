// Policy: `whittle decode`, the inverse of encode: a JSON array of ids → the text (written as is, no newline added);
// with --jsonl, {"ids": […]} lines → {"text": …} lines in order.
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Whittle.Cli;

static class DecodeCommand
{
    public static Command Create()
    {
        var cmd = new Command("decode", "Decode token ids (a JSON array; with --jsonl, {\"ids\"} lines to {\"text\"} lines) to text.");
        EncodeCommand.AddInputOptions(cmd);
        cmd.SetAction(parse =>
        {
            var (tok, input, jsonl) = EncodeCommand.InputOptions(parse);
            using var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
            if (!jsonl)
            {
                var text = EncodeCommand.ReadAllText(input);
                JsonElement arr;
                try { arr = JsonDocument.Parse(text).RootElement; }
                catch (JsonException e) { throw new WhittleException($"{input ?? "standard input"}: not valid JSON ({e.Message})"); }
                stdout.Write(tok.Decode(Ids(arr, input, 1)));
                return 0;
            }
            EncodeCommand.ProcessJsonl(input, stdout, batch => batch.Select(l =>
            {
                var s = tok.Decode(Ids(EncodeCommand.Field(l.Line, l.No, "ids", JsonValueKind.Array, input), input, l.No));
                var ms = new MemoryStream();
                using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                { w.WriteStartObject(); w.WriteString("text", s); w.WriteEndObject(); }
                return Encoding.UTF8.GetString(ms.ToArray());
            }).ToArray());
            return 0;
        });
        return cmd;
    }

    static int[] Ids(JsonElement arr, string? path, long line)
    {
        if (arr.ValueKind != JsonValueKind.Array)
            throw new WhittleException($"{path ?? "standard input"}: line {line}: expected a JSON array of token ids");
        var ids = new int[arr.GetArrayLength()];
        int i = 0;
        foreach (var e in arr.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out ids[i]))
                throw new WhittleException($"{path ?? "standard input"}: line {line}: element {i} is not an integer token id");
            i++;
        }
        return ids;
    }
}
