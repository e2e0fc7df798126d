namespace Whittle.Native;

/// <summary>
/// Problems worth telling the user that do not stop the work (e.g. NaN weights in a loaded model). The library never
/// writes to the console itself: the CLI points <see cref="Sink"/> at stderr, tests can collect the lines.
/// </summary>
public static class Warnings
{
    public static Action<string> Sink { get; set; } = _ => { };

    public static void Warn(string message) => Sink(message);
}
