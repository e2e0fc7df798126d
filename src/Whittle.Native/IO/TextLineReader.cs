// Policy: streams a text file (gzip detected by its magic bytes, not its name) as lines of UTF-8, in bounded memory.
// Invalid UTF-8 is an error naming the file and the byte offset in the uncompressed stream, unless the caller asks
// for U+FFFD replacement. A line longer than MaxLineBytes comes back in pieces (IsContinuation marks the later ones).
using System.Buffers;
using System.IO.Compression;
using System.Text;
using System.Text.Unicode;

namespace Whittle.Native.IO;

internal sealed class TextLineReader : IDisposable
{
    public const int MaxLineBytes = 1 << 20;
    readonly Stream _stream;
    readonly FileStream _file;
    readonly string _path;
    readonly bool _replaceInvalid;
    readonly byte[] _buf = new byte[MaxLineBytes + 4];
    int _start, _end;              // valid bytes are _buf[_start.._end)
    long _offset;                  // uncompressed offset of _buf[_start]
    bool _eof, _midLine;
    char[] _chars = new char[1024];

    public TextLineReader(string path, bool replaceInvalid)
    {
        _path = path;
        _replaceInvalid = replaceInvalid;
        if (!File.Exists(path)) throw new WhittleException($"{path}: input file not found");
        var file = _file = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[2];
        int n = file.Read(magic);
        file.Position = 0;
        _stream = n == 2 && magic[0] == 0x1F && magic[1] == 0x8B ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    /// <summary>Position in the file on disk (compressed bytes for gzip): for progress.</summary>
    public long FilePosition => _file.Position;

    /// <summary>Bytes consumed so far (uncompressed).</summary>
    public long Offset => _offset;

    /// <summary>The next line including its '\n' (absent on a last line without one), or null at the end.</summary>
    public string? ReadLine(out bool isContinuation)
    {
        isContinuation = _midLine;
        while (true)
        {
            int nl = Array.IndexOf(_buf, (byte)'\n', _start, _end - _start);
            if (nl >= 0) { _midLine = false; return Take(nl + 1 - _start, final: true); }
            if (_eof)
            {
                _midLine = false;
                return _end > _start ? Take(_end - _start, final: true) : null;
            }
            if (_end - _start >= MaxLineBytes)
            {
                // Cut a long line at a character boundary: never inside a UTF-8 sequence.
                int cut = _start + MaxLineBytes;
                while (cut > _start && (_buf[cut] & 0xC0) == 0x80) cut--;
                if (cut == _start) cut = _start + MaxLineBytes;   // no boundary at all: the bytes are invalid anyway
                _midLine = true;
                return Take(cut - _start, final: true);
            }
            Fill();
        }
    }

    void Fill()
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buf, _start, _buf, 0, _end - _start);
            _end -= _start; _start = 0;
        }
        int read;
        try { read = _stream.Read(_buf, _end, _buf.Length - _end); }
        catch (InvalidDataException e)
        {
            throw new InvalidFileException(_path, $"corrupt gzip stream after {_offset + _end} bytes ({e.Message})");
        }
        if (read == 0) _eof = true;
        _end += read;
    }

    string Take(int count, bool final)
    {
        var bytes = _buf.AsSpan(_start, count);
        if (_chars.Length < count) _chars = new char[Math.Max(count, _chars.Length * 2)];
        var status = Utf8.ToUtf16(bytes, _chars, out int read, out int written, _replaceInvalid, isFinalBlock: final);
        if (status != OperationStatus.Done && !(_replaceInvalid && status == OperationStatus.NeedMoreData))
            throw new InvalidFileException(
                _path, $"invalid UTF-8 at byte offset {_offset + read} (of the uncompressed text); pass --replace-invalid to substitute " +
                $"U+FFFD");
        _start += count;
        _offset += count;
        return new string(_chars, 0, written);
    }

    public void Dispose() => _stream.Dispose();
}
