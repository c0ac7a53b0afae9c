namespace Weft.Models.Chat;

/// <summary>One turn of a conversation as the OpenAI chat API sends it: Role is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content);
