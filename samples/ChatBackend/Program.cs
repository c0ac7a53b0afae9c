using Weft.Samples.ChatBackend;

// dotnet run --project samples/ChatBackend -- --urls http://127.0.0.1:5000 [--Weft:GatewayPort 30000]
await ChatBackendApp.Build(args).RunAsync();
