// Policy: `whittle encode`: text → token ids as JSON. Plain mode reads the whole input as one text and prints one
// array; --jsonl maps each {"text": …} line to an {"ids": […]} line, in input order, encoding batches in parallel.
using System.Text;
using System.Text.Json;

namespace Whittle.Cli;

static class EncodeCommand
{
    public static readonly Option<string> TokenizerOption = new("--tokenizer") { Description = "tokenizer.json, or " +
        "encoder.json/vocab.json beside vocab.bpe/merges.txt.", Required = true };
    public static readonly Option<string?> InputOption = new("--input") { Description = "Input file (standard input when absent)." };
    public static readonly Option<bool> JsonlOption = new("--jsonl") { Description = "One JSON object per line in and out." };

    public static Command Create()
    {
        var cmd = new Command("encode", "Encode text to token ids (a JSON array; with --jsonl, {\"text\"} lines to {\"ids\"} lines).");
        AddInputOptions(cmd);
        cmd.SetAction(parse =>
        {
            var (tok, input, jsonl) = InputOptions(parse);
            using var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = false };
            if (!jsonl)
            {
                WriteIds(stdout, tok.Encode(ReadAllText(input)), "");
                stdout.WriteLine();
                return 0;
            }
            ProcessJsonl(input, stdout, batch =>
            {
                var texts = batch.Select(l => Field(l.Line, l.No, "text", JsonValueKind.String, input).GetString()!).ToArray();
                return tok.EncodeBatch(texts).Select(
                    ids => { var sb = new StringWriter(); WriteIds(sb, ids, "ids"); return sb.ToString(); }).ToArray();
            });
            return 0;
        });
        return cmd;
    }

    /// <summary>--tokenizer, --input and --jsonl, shared by encode and decode (an option may belong to several commands).</summary>
    public static void AddInputOptions(Command cmd)
    {
        cmd.Options.Add(TokenizerOption);
        cmd.Options.Add(InputOption);
        cmd.Options.Add(JsonlOption);
    }

    /// <summary>The tokenizer (loaded), the input path (null: standard input) and whether the input is JSONL.</summary>
    public static (Tokenizer Tokenizer, string? Input, bool Jsonl) InputOptions(ParseResult parse) =>
        (Tokenizer.FromFile(parse.GetValue(TokenizerOption)!), parse.GetValue(InputOption), parse.GetValue(JsonlOption));

    static void WriteIds(TextWriter w, int[] ids, string key)
    {
        if (key.Length > 0) w.Write($"{{\"{key}\":");
        w.Write('[');
        for (int i = 0; i < ids.Length; i++) { if (i > 0) w.Write(','); w.Write(ids[i]); }
        w.Write(']');
        if (key.Length > 0) w.Write('}');
    }

    /// <summary>All of a file or standard input as strict UTF-8.</summary>
    public static string ReadAllText(string? path)
    {
        byte[] bytes;
        if (path is null) { using var ms = new MemoryStream(); Console.OpenStandardInput().CopyTo(ms); bytes = ms.ToArray(); }
        else if (!File.Exists(path)) throw new WhittleException($"{path}: input file not found");
        else bytes = File.ReadAllBytes(path);
        try { return new UTF8Encoding(false, true).GetString(bytes); }
        catch (DecoderFallbackException e)
        {
            throw new WhittleException($"{path ?? "standard input"}: invalid UTF-8 at byte offset {e.Index}");
        }
    }

    /// <summary>Maps JSONL lines to output lines in order, a batch at a time.</summary>
    public static void ProcessJsonl(string? path, TextWriter output, Func<List<(string Line, long No)>, string[]> map)
    {
        using var reader = path is null ? new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false, true))
            : File.Exists(path) ? new StreamReader(path, new UTF8Encoding(false, true))
                : throw new WhittleException($"{path}: input file not found");
        var batch = new List<(string, long)>();
        long no = 0;
        void Flush() { foreach (var s in map(batch)) output.WriteLine(s); batch.Clear(); }
        string? line;
        try
        {
            while ((line = reader.ReadLine()) is not null)
            {
                no++;
                if (line.Length == 0) continue;
                batch.Add((line, no));
                if (batch.Count >= 4096) Flush();
            }
        }
        catch (DecoderFallbackException) { throw new WhittleException($"{path ?? "standard input"}: invalid UTF-8 on line {no + 1}"); }
        Flush();
    }

    public static JsonElement Field(string line, long no, string name, JsonValueKind kind, string? path)
    {
        try
        {
            var root = JsonDocument.Parse(line).RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty(name, out var v) && v.ValueKind == kind) return v.Clone();
        }
        catch (JsonException e) { throw new WhittleException($"{path ?? "standard input"}: line {no}: not valid JSON ({e.Message})"); }
        throw new WhittleException($"{path ?? "standard input"}: line {no}: expected an object with \"{name}\" " +
            $"({kind.ToString().ToLowerInvariant()})");
    }
}
