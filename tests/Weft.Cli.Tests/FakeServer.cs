using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Weft.Cli.Tests;

/// <summary>
/// A stand-in for an OpenAI-compatible server on a loopback port (HttpListener, so the tests need no web host): it
/// lists one model and answers each streaming completion as <see cref="Answer"/> decides, given the request's number
/// (from 1).
/// </summary>
sealed class FakeServer : IDisposable
{
    readonly HttpListener _listener = new();
    readonly Task _loop;
    int _requests;

    public FakeServer(Func<int, HttpStatusCode> answer)
    {
        Answer = answer;
        Port = FreePort();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _loop = Task.Run(LoopAsync);
    }

    public int Port { get; }
    public Func<int, HttpStatusCode> Answer { get; }
    public int Requests => _requests;

    async Task LoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
                return;
            }
            _ = Task.Run(() => Respond(context));
        }
    }

    void Respond(HttpListenerContext context)
    {
        using var response = context.Response;
        // a fresh connection per request: the managed HttpListener now and then reset a reused one under load
        response.KeepAlive = false;
        string path = context.Request.Url!.AbsolutePath;
        string body;
        if (path == "/v1/models") body = """{"object":"list","data":[{"id":"fake","object":"model"}]}""";
        else if (path == "/v1/completions")
        {
            var status = Answer(Interlocked.Increment(ref _requests));
            response.StatusCode = (int)status;
            if (status == HttpStatusCode.OK)
            {
                response.ContentType = "text/event-stream";
                body = """data: {"choices":[{"index":0,"text":"a","token_ids":[5]}]}""" + "\n\n" +
                    """data: {"choices":[{"index":0,"text":"b","token_ids":[6]}]}""" + "\n\n" + "data: [DONE]\n\n";
            }
            else body = """{"error":{"message":"refused","type":"error"}}""";
        }
        else
        {
            response.StatusCode = 404;
            body = "";
        }
        var bytes = Encoding.UTF8.GetBytes(body);
        response.OutputStream.Write(bytes);
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _loop.Wait();
    }
}
