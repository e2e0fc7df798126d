#!/usr/bin/env pwsh
# Policy: thin wrappers over the commands README.md gives, nothing more, so `build.ps1 test` runs exactly the README's
# test command. Run it through the PowerShell pinned in .config/dotnet-tools.json:
#   dotnet tool restore && dotnet pwsh ./build.ps1 [build|test|bench|publish|demo|docs] [arguments for the command]
# Everything after the target goes to the wrapped command unchanged (`test --filter X`, `demo --preset quick`). There is
# no param block on purpose: PowerShell would take `-v`, `-c`, `-d` or `--` for its own common parameters.
# Exit status: the wrapped command's; 1 (with a usage line) for an unknown target. .ci/run runs `build` and
# `test --filter ...` so the script cannot rot unnoticed.
$ErrorActionPreference = 'Stop'
$target, $rest = $args
if ($null -eq $target) { $target = 'build' }
$rest = @($rest | Where-Object { $null -ne $_ })
Set-Location $PSScriptRoot
switch ($target) {
    'build' { dotnet build Whittle.Native.sln -c Release @rest }
    'test' { dotnet test tests/Whittle.Native.Tests -c Release @rest }
    'bench' { dotnet run -c Release --project bench/Whittle.Native.Bench -- @rest }
    'publish' { bash tools/publish.sh @rest }
    'demo' { dotnet run -c Release --project src/Whittle.Cli -- demo @rest }
    'docs' { dotnet run -c Release --project src/Whittle.Cli -- docs @rest }
    default {
        [Console]::Error.WriteLine("error: unknown target '$target'; expected build, test, bench, publish, demo or docs")
        exit 1
    }
}
exit $LASTEXITCODE
