namespace Whittle.Native;

/// <summary>
/// An error caused by the user's input (a file, a flag, a config), not by a bug. Its message is one line that names
/// the file, tensor or option at fault and what was expected; the CLI prints just that line and exits 1.
/// </summary>
public class WhittleException : Exception
{
    public WhittleException(string message) : base(message) { }
    public WhittleException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>A file is missing, truncated, corrupt or inconsistent with another file.</summary>
public class InvalidFileException : WhittleException
{
    public InvalidFileException(string path, string problem, string? tensor = null)
        : base(tensor is null ? $"{ErrorText.Clip(path, 1000)}: {problem}" : $"{ErrorText.Clip(path, 1000)}: tensor " +
            $"'{ErrorText.Clip(tensor)}': {problem}")
    { Path = path; Tensor = tensor; }
    public string Path { get; }
    public string? Tensor { get; }
}
