using System.Runtime.InteropServices;
using Whittle.Native.Cuda;
using Whittle.Native.Cuda.Native;

namespace Whittle.Native.Tests.Cuda;

/// <summary>The cuBLASLt structs we pass by pointer must have the C layout of cublasLt.h (checked without a device).</summary>
public class CublasLtLayoutTests
{
    [Test]
    public void HeuristicResultHasTheCLayout()
    {
        // cublasLtMatmulHeuristicResult_t: cublasLtMatmulAlgo_t { uint64_t data[8]; } algo; size_t workspaceSize;
        // cublasStatus_t state; float wavesCount; int reserved[4];  → 64 + 8 + 4 + 4 + 16 bytes.
        Assert.That(Marshal.SizeOf<Cublas.LtHeuristicResult>(), Is.EqualTo(96));
        Assert.That(Marshal.OffsetOf<Cublas.LtHeuristicResult>(nameof(Cublas.LtHeuristicResult.WorkspaceSize)), Is.EqualTo((nint)64));
        Assert.That(Marshal.OffsetOf<Cublas.LtHeuristicResult>(nameof(Cublas.LtHeuristicResult.State)), Is.EqualTo((nint)72));
    }

    [Test]
    public void AlignmentPreferenceIsTheLargestPowerOfTwoDividingTheAddressUpTo256()
    {
        // cuBLASLt assumes 256-byte operands unless told; a bf16 weight view at an odd element offset is only 2-byte aligned.
        Assert.That(CublasLtGemm.Alignment(unchecked((nint)0x7f00_0000_1000)), Is.EqualTo(256u));
        Assert.That(CublasLtGemm.Alignment(unchecked((nint)0x7f00_0000_1002)), Is.EqualTo(2u));
        Assert.That(CublasLtGemm.Alignment(unchecked((nint)0x7f00_0000_1030)), Is.EqualTo(16u));
        Assert.That(CublasLtGemm.Alignment(unchecked((nint)0x7f00_0000_1080)), Is.EqualTo(128u));
    }
}
