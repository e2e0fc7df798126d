// Policy: every JSON file a user can hand us (config.json, tokenizer.json, meta.json, trainer_state.json, ...) is read
// through JsonField: a value together with the file it came from and its JSON path. A reader asks for what it needs
// (Bool, Int, String, Items, ...) and gets either that or one InvalidFileException line naming the file and the field
// ("config.json: field 'tie_word_embeddings' must be a boolean, got string"), never an InvalidOperationException,
// KeyNotFoundException or FormatException from System.Text.Json. Numbers are range-checked where they are read, so a
// reader states its bounds once instead of trusting a later cast.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Whittle.Native;

/// <summary>A JSON value at a known path of a known file; every typed accessor throws <see cref="InvalidFileException"/> naming
/// both.</summary>
public readonly struct JsonField
{
    readonly JsonElement _e;

    JsonField(string file, string path, JsonElement e) { File = file; Path = path; _e = e; }

    /// <summary>The file (or other source) the value came from, as error messages name it.</summary>
    public string File { get; }
    /// <summary>The value's JSON path, e.g. <c>model.vocab</c> or <c>added_tokens[3].id</c>; empty for the root.</summary>
    public string Path { get; }

    /// <summary>Parses a whole file; anything that is not JSON is an error naming the file.</summary>
    public static JsonField Load(string file, int maxDepth = 64)
    {
        InputFile.RequireRegular(file);   // a FIFO or device would block or never end
        byte[] bytes;
        try { bytes = System.IO.File.ReadAllBytes(file); }
        catch (FileNotFoundException) { throw new InvalidFileException(file, "file not found"); }
        catch (DirectoryNotFoundException) { throw new InvalidFileException(file, "file not found (its directory does not exist)"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidFileException(file, $"cannot be read: {e.Message}");
        }
        return Parse(file, bytes, maxDepth);
    }

    public static JsonField Parse(string file, ReadOnlyMemory<byte> utf8, int maxDepth = 64)
    {
        // JsonDocument checks UTF-8 only when a string is read; checking the whole file here keeps every later read total.
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span))
        {
            System.Text.Unicode.Utf8.ToUtf16(utf8.Span, new char[utf8.Length], out int at, out _, replaceInvalidSequences: false);
            throw new InvalidFileException(file, $"not valid UTF-8 (at byte {at})");
        }
        try
        {
            using var doc = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = maxDepth });
            return new JsonField(file, "", doc.RootElement.Clone());
        }
        catch (JsonException e) { throw new InvalidFileException(file, $"not valid JSON: {OneLine(e.Message)}"); }
    }

    public static JsonField Parse(string file, string json, int maxDepth = 64) =>
        Parse(file, System.Text.Encoding.UTF8.GetBytes(json), maxDepth);

    /// <summary>A JsonNode built in memory (or parsed by a caller) seen through the same checks.</summary>
    public static JsonField FromNode(JsonNode? node, string file)
    {
        // JsonObject defers duplicate-key detection to first use; serialising surfaces it here as an ArgumentException.
        try { return Parse(file, node is null ? "null" : node.ToJsonString()); }
        catch (ArgumentException e) { throw new InvalidFileException(file, $"not valid JSON: {OneLine(e.Message)}"); }
    }

    public JsonValueKind Kind => _e.ValueKind;
    /// <summary>False when the key was absent.</summary>
    public bool Exists => _e.ValueKind != JsonValueKind.Undefined;
    /// <summary>True when the key was absent or its value is null: the reader should use its default.</summary>
    public bool IsAbsent => _e.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null;

    /// <summary>The error every accessor throws: "FILE: field 'PATH' PROBLEM" (the root is called "the top level").</summary>
    public InvalidFileException Error(string problem) =>
        new(File, Path.Length == 0 ? $"the top level {problem}" : $"field '{Truncate(Path)}' {problem}");

    InvalidFileException Wrong(string expected) =>
        Exists ? Error($"must be {expected}, got {Describe(_e)}") : Error($"is missing (expected {expected})");

    // ---------------------------------------------------------------- objects and arrays

    /// <summary>This value as an object (an error otherwise).</summary>
    public JsonField RequireObject() => _e.ValueKind == JsonValueKind.Object ? this : throw Wrong("an object");

    /// <summary>The member <paramref name="key"/> (absent when missing); this value must be an object.</summary>
    public JsonField this[string key]
    {
        get
        {
            RequireObject();
            string path = Path.Length == 0 ? key : $"{Path}.{key}";
            return new JsonField(File, path, _e.TryGetProperty(key, out var v) ? v : default);
        }
    }

    public bool Has(string key) => _e.ValueKind == JsonValueKind.Object && _e.TryGetProperty(key, out _);

    public IEnumerable<(string Name, JsonField Value)> Properties()
    {
        RequireObject();
        var self = this;
        try
        {
            return _e.EnumerateObject().Select(
                p => (p.Name, new JsonField(self.File, self.Path.Length == 0 ? p.Name : $"{self.Path}.{p.Name}", p.Value))).ToArray();
        }
        catch (InvalidOperationException) { throw Error("has a key that is not a valid Unicode string (a lone surrogate escape)"); }
    }

    /// <summary>The elements of this array (an error when it is anything else).</summary>
    public IReadOnlyList<JsonField> Items()
    {
        if (_e.ValueKind != JsonValueKind.Array) throw Wrong("an array");
        var self = this;
        return _e.EnumerateArray().Select((v, i) => new JsonField(self.File, $"{self.Path}[{i}]", v)).ToArray();
    }

    /// <summary>The elements, or none when the field is absent or null.</summary>
    public IReadOnlyList<JsonField> ItemsOrEmpty() => IsAbsent ? [] : Items();

    // ---------------------------------------------------------------- scalars

    public string String()
    {
        if (_e.ValueKind != JsonValueKind.String) throw Wrong("a string");
        // An escaped lone surrogate ("\ud800") is valid JSON text but not a valid string.
        try { return _e.GetString()!; }
        catch (InvalidOperationException) { throw Error("is not a valid Unicode string (a lone surrogate escape)"); }
    }
    public string? StringOrNull() => IsAbsent ? null : String();

    public bool Bool() => _e.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Wrong("a boolean"),
    };
    public bool BoolOr(bool absent) => IsAbsent ? absent : Bool();

    /// <summary>An integer in [min, max]; a number with a zero fraction (2.0) counts as an integer.</summary>
    public long Long(long min = long.MinValue, long max = long.MaxValue)
    {
        string range = RangeText(min, max);
        if (_e.ValueKind != JsonValueKind.Number) throw Wrong($"an integer{range}");
        if (!_e.TryGetInt64(out long v))
        {
            if (!_e.TryGetDouble(out double d) || d != Math.Floor(d) || d < -9.2e18 || d > 9.2e18)
                throw Error($"must be an integer{range}, got {Raw(_e)}");
            v = (long)d;
        }
        if (v < min || v > max) throw Error($"must be an integer{range}, got {Raw(_e)}");
        return v;
    }
    public long LongOr(long absent, long min = long.MinValue, long max = long.MaxValue) => IsAbsent ? absent : Long(min, max);

    /// <summary>An unsigned 64-bit integer (seeds are written as numbers up to 2^64 − 1).</summary>
    public ulong ULong()
    {
        if (_e.ValueKind != JsonValueKind.Number) throw Wrong("an unsigned 64-bit integer");
        return _e.TryGetUInt64(out ulong v) ? v : throw Error($"must be an unsigned 64-bit integer, got {Raw(_e)}");
    }

    public int Int(int min = int.MinValue, int max = int.MaxValue) => (int)Long(min, max);
    public int IntOr(int absent, int min = int.MinValue, int max = int.MaxValue) => IsAbsent ? absent : Int(min, max);

    /// <summary>A finite number (JSON has no NaN or Infinity, but 1e999 parses to infinity).</summary>
    public double Double()
    {
        if (_e.ValueKind != JsonValueKind.Number) throw Wrong("a number");
        return _e.TryGetDouble(out double d) && double.IsFinite(d) ? d : throw Error($"must be a finite number, got {Raw(_e)}");
    }
    public double DoubleOr(double absent) => IsAbsent ? absent : Double();

    /// <summary>A number that is finite as a float32 too.</summary>
    public float Float()
    {
        double d = Double();
        return float.IsFinite((float)d) ? (float)d : throw Error($"must be a number within float32 range, got {Raw(_e)}");
    }
    public float FloatOr(float absent) => IsAbsent ? absent : Float();

    /// <summary>A SHA-256 digest as 64 hex digits (messages quote its first 12).</summary>
    public string Sha256Hex()
    {
        string s = String();
        return s.Length == 64
            && s.All(char.IsAsciiHexDigit) ? s : throw Error($"must be a SHA-256 digest (64 hex digits), got \"{Truncate(s)}\"");
    }

    /// <summary>The value as compact JSON text, shortened for messages.</summary>
    public string RawText => Exists ? Raw(_e) : "missing";

    // ---------------------------------------------------------------- message helpers

    static string RangeText(long min, long max) => (min, max) switch
    {
        (long.MinValue, long.MaxValue) => "",
        (_, long.MaxValue) => $" >= {min}",
        (long.MinValue, _) => $" <= {max}",
        _ => $" in [{min}, {max}]",
    };

    static string Describe(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Number => $"number {Raw(e)}",
        JsonValueKind.String => "string",
        JsonValueKind.Null => "null",
        JsonValueKind.Array => "array",
        JsonValueKind.Object => "object",
        _ => "nothing",
    };

    static string Raw(JsonElement e) => Truncate(e.GetRawText());

    /// <summary>Echoed input is cut short: an error line stays one readable line whatever the file holds.</summary>
    internal static string Truncate(string s, int max = 80)
    {
        s = OneLine(s);
        return s.Length <= max ? s : s[..max] + "…";
    }

    static string OneLine(string s) => s.ReplaceLineEndings(" ");

    public override string ToString() => $"{File}:{Path}={RawText}";
}

/// <summary>Invariant-culture parsing of numbers that JSON files carry as strings (e.g. a 64-bit seed).</summary>
static class JsonFieldExtensions
{
    public static ulong ULongString(this JsonField f) =>
        ulong.TryParse(f.String(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong v) ? v
            : throw f.Error($"must be a decimal unsigned 64-bit integer in a string, got \"{JsonField.Truncate(f.String())}\"");
}
