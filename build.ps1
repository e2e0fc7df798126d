#!/usr/bin/env pwsh
# Thin wrappers over dotnet. Usage: ./build.ps1 [build|test|bench|publish|demo] [extra args passed through]
param([Parameter(Position = 0)][ValidateSet('build', 'test', 'bench', 'publish', 'demo')][string]$Target = 'build',
      [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
switch ($Target) {
    'build'   { dotnet build Whittle.Native.sln -c Release @Rest }
    'test'    { dotnet test tests/Whittle.Native.Tests -c Release @Rest }
    'bench'   { dotnet run -c Release --project bench/Whittle.Native.Bench -- @Rest }
    'publish' { bash tools/publish.sh @Rest }
    'demo'    { dotnet run -c Release --project src/Whittle.Cli -- demo @Rest }
}
exit $LASTEXITCODE
